"""Checkpoint files in the original's format: `torch.save` of {'epoch', 'state_dict', 'optimizer',
'params'} (plain Python types, so weights_only loading reads it), plus 'class_names' in files written here.
"""
import os
from decimal import Decimal

import numpy as np
import torch

from . import feature_files
from .baselines import BASELINE_NAMES
from .paths import atomic_write

try:
    from numpy._core.multiarray import scalar as _numpy_scalar
except ImportError:  # numpy < 2
    from numpy.core.multiarray import scalar as _numpy_scalar

CHECKPOINT_KEYS = ("epoch", "state_dict", "optimizer", "params")
CLASS_NAMES_KEY = "class_names"
# written here besides: the files that defined the data (resume.data_record) and the number of torchrun processes
DATA_KEY, WORLD_SIZE_KEY = "data", "world_size"
# the phase a checkpoint of this project belongs to: params[CHECKPOINT_PHASE_KEY] is one of the two phases
CHECKPOINT_PHASE_KEY = "checkpoint_phase"
PRETRAINING, FINETUNING = "pre-training", "fine-tuning"
SUFFIX = ".pth.tar"
# which pre-training losses put which hyper-parameters into the file name
RAND_SAMPLE_TAG_LOSSES = ("imgcontloss", "imgcontlosssimcse", "contsoftmax", "contsoftmaxsym")
SIMCSE_TAG_LOSSES = ("imgcontlosssimcse", "contsoftmax", "contsoftmaxsym")
TEMPERATURE_TAG_LOSSES = ("contsoftmax", "contsoftmaxsym")
# the pre-training of --mask_duplicate_negatives T (the default F adds nothing: the original's names)
MASK_TAG = "_MASKDUP"
# The released fMoW checkpoints were named before the image-model tag was added to non-iNat-2018 names.
RELEASED_FMOW_TAG = "_inception_v3_"
# a baseline fitted on all training labels at a few-shot ratio (--baseline_full_train T): its own files
FULL_TRAIN_TAG = "_fulltrain"
# numpy scalars in params (the original stored rbf anchor ids as numpy int64): safe to unpickle
NUMPY_SCALAR_GLOBALS = [_numpy_scalar, (_numpy_scalar, "numpy.core.multiarray.scalar"), np.dtype,
                        *(type(np.dtype(name)) for name in ("bool", "int32", "int64", "float32", "float64"))]


def _lr_tag(lr):
    """lr with 4 decimals, or 8 beyond 4 significant decimals (0.001 -> 0.0010, 5e-5 -> 0.00005000)."""
    exponent = Decimal(str(lr)).normalize().as_tuple().exponent
    return f"{lr:.{4 if exponent >= -4 else 8}f}"


def _cnn_tag(params):
    """The image-model tag of a file name (none for iNat2018's inception_v3; own data: the backbone)."""
    if params["dataset"] == "inat_2018" and params["cnn_model"] == "inception_v3":
        return ""
    recorded = (feature_files.recorded_backbone(params["features"])
                if params["dataset"] == "custom" and params.get("features") else None)
    return f"{recorded or params['cnn_model']}_"


def _encoder_args(params):
    cnn_tag = _cnn_tag(params)
    args = (f"{cnn_tag}{_lr_tag(params['lr'])}_{params['frequency_num']:d}_{params['min_radius']:.7f}"
            f"_{params['num_hidden_layer']:d}_{params['hidden_dim']:d}")
    if params["batch_size"] != 1024:
        args += f"_BATCH{params['batch_size']:d}"
    if params["num_filts"] != 256:
        args += f"_EMB{params['num_filts']:d}"
    if params["spa_enc_type"] == "rff":
        args += f"_{params['rbf_kernal_size']:.1f}"
    if params["spa_enc_type"] == "rbf":
        args += f"_{params['num_rbf_anchor_pts']:d}_{params['rbf_kernal_size']:.1f}"
    if params["dropout"] != 0.5:
        args += f"_DROPOUT{params['dropout']:.1f}"
    if params["weight_decay"] != 0:
        args += f"_WDECAY{params['weight_decay']:.6f}"
    if params["spa_enc_type"] == "spherical_harmonics":
        args += f"_L{params['legendre_poly_num']:d}"
    if params.get("spa_enc_net", "ffn") != "ffn":
        args += f"_{params['spa_enc_net'].upper()}"
    return args


def _pretraining_args(params):
    loss = params["unsuper_loss"]
    args = f"_{params['unsuper_lr']:.6f}"
    if loss in RAND_SAMPLE_TAG_LOSSES:
        args += f"_{params['rand_sample_weight']:.3f}_{params['num_neg_rand_loc']:d}"
    if loss in SIMCSE_TAG_LOSSES:
        args += f"_{params['simcse_weight']:.3f}"
    if loss in TEMPERATURE_TAG_LOSSES:
        args += (f"_TMP{params['unsuper_temp_inbatch']:.4f}_{params['unsuper_temp_negloc']:.4f}"
                 f"_{params['unsuper_temp_simcse']:.4f}")
    if params.get("mask_duplicate_negatives") and loss != "l2regress":
        args += MASK_TAG
    return args


def _ratio_tag(params):
    ratio, method = params["train_sample_ratio"], params["train_sample_method"]
    tag = f"ratio{ratio:.3f}" if method == "stratified-fix" else f"ratio{ratio:.3f}-{method}"
    if params.get("baseline_full_train") and params["spa_enc_type"] in BASELINE_NAMES and ratio < 1:
        tag += FULL_TRAIN_TAG
    return tag


def _path(params, args):
    dataset = params["dataset"] if params["meta_type"] == "" else f"{params['dataset']}_{params['meta_type']}"
    return os.path.join(params["model_dir"], f"model_{dataset}_{params['spa_enc_type']}_{args}{SUFFIX}")


def model_file_names(params):
    """(pre-training checkpoint or None, fine-tuned checkpoint) of a run, named as the original's
    `make_model_file_param_args`: `{model_dir}/model_{dataset}[_{meta_type}]_{spa_enc_type}_{args}.pth.tar`."""
    loss, act, ratio = params["unsuper_loss"], params["spa_f_act"], params["train_sample_ratio"]
    encoder_args = _encoder_args(params)
    if loss == "none":
        if ratio == 1.0:
            tag = "" if act == "relu" else f"_{act}"
        else:
            tag = f"_{act}_none_{_ratio_tag(params)}"
        return None, _path(params, encoder_args + tag)
    pretraining = f"{encoder_args}_{act}_UNSUPER-{loss}{_pretraining_args(params)}"
    fine_tuned = f"{encoder_args}_{act}_{loss}_{_ratio_tag(params)}{_pretraining_args(params)}"
    return _path(params, pretraining), _path(params, fine_tuned)


def _stem(model_file_name):
    return model_file_name[:-len(SUFFIX)] if model_file_name.endswith(SUFFIX) else model_file_name


def log_file_name(model_file_name):
    return _stem(model_file_name) + ".log"


def epoch_file_name(path, epoch):
    """`….pth.tar` -> `…-Epoch-{epoch}.pth.tar`."""
    return f"{_stem(path)}-Epoch-{epoch}{SUFFIX}"


def check_class_head(params, source):
    """ValueError when `params` are a pre-training checkpoint's (untrained class head)."""
    phase = params.get(CHECKPOINT_PHASE_KEY)
    if phase == PRETRAINING or (phase is None and "UNSUPER-" in os.path.basename(str(source))):
        raise ValueError(f"{source} is a pre-training checkpoint: its class head was never trained, so its class "
                         f"probabilities (and maps) would be noise; use the fine-tuned checkpoint (its name has "
                         f"_ratio…, not UNSUPER-); its embeddings (embed, the clusters figure) are fine")


def find_checkpoint(path):
    """`path` if a file, else the released fMoW name (no `_inception_v3_`) if it exists, else None."""
    if os.path.isfile(path):
        return path
    folder, name = os.path.split(path)
    released = os.path.join(folder, name.replace(RELEASED_FMOW_TAG, "_", 1))
    if released != path and os.path.isfile(released):
        return released
    return None


def plain_value(value, key="params"):
    """`value` as plain Python types; else ValueError."""
    if isinstance(value, np.generic):  # before float: np.float64 is a float subclass
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [plain_value(item, key) for item in value]
    if isinstance(value, dict):
        return {str(name): plain_value(item, f"{key}[{name!r}]") for name, item in value.items()}
    if isinstance(value, (torch.device, os.PathLike)):
        return str(value)
    raise ValueError(f"{key} = {value!r} ({type(value).__name__}) cannot be stored in a checkpoint; "
                     f"use plain Python types")


def save_checkpoint(path, model, optimizer, epoch, params, class_names=None, records=None):
    """Write the checkpoint of `model` (and `optimizer`) to `path` atomically, plus `records`.
    ValueError for params that are not plain values."""
    state = {"epoch": int(epoch), "state_dict": model.state_dict(),
             "optimizer": None if optimizer is None else optimizer.state_dict(), "params": plain_value(params)}
    if class_names is not None:
        state[CLASS_NAMES_KEY] = [str(name) for name in class_names]
    state.update(plain_value(records or {}, "records"))
    atomic_write(path, lambda handle: torch.save(state, handle))


def load_checkpoint(path, device="cpu"):
    """The checkpoint dict at `path` (weights_only), tensors on `device`; FileNotFoundError, or
    ValueError when it is not a complete checkpoint."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        with torch.serialization.safe_globals(NUMPY_SCALAR_GLOBALS):
            ckpt = torch.load(path, map_location=device, weights_only=True)
    except PermissionError:
        raise
    except Exception as err:  # torch.load of a file that is not a checkpoint fails in many ways
        raise ValueError(f"{path} is not a readable CSP checkpoint (truncated, not a torch file, or holds objects "
                         f"other than tensors and plain values): {_first_reason(err)}") from None
    missing = [key for key in CHECKPOINT_KEYS if not isinstance(ckpt, dict) or key not in ckpt]
    if missing:
        raise ValueError(f"{path} is not a CSP checkpoint: it lacks {', '.join(missing)}")
    problem = _malformed_part(ckpt)
    if not problem:
        ckpt["params"] = plain_value(ckpt["params"])
        problem = _malformed_params(ckpt["params"], ckpt["state_dict"]) or _malformed_records(ckpt, ckpt["state_dict"])
    if problem:
        raise ValueError(f"{path} is malformed: {problem}; it is not a checkpoint this project or the original wrote "
                         f"(use the file the run wrote, or write it again)")
    return ckpt


def _first_reason(err):
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    first = f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__
    return next((line for line in lines if line.startswith("WeightsUnpickler error")), first)


def _malformed_part(ckpt):
    state = ckpt["state_dict"]
    if not isinstance(state, dict):
        return f"its state_dict is a {type(state).__name__}, not a mapping of parameter names to tensors"
    wrong = [key for key, value in state.items() if not isinstance(key, str) or not isinstance(value, torch.Tensor)]
    if wrong:
        return f"its state_dict maps {wrong[0]!r} to something other than a tensor"
    if not isinstance(ckpt["params"], dict):
        return f"its params is a {type(ckpt['params']).__name__}, not a mapping of flag names to values"
    if ckpt["optimizer"] is not None and not isinstance(ckpt["optimizer"], dict):
        return f"its optimizer state is a {type(ckpt['optimizer']).__name__}, not a mapping"
    if not _is_int(ckpt["epoch"], 0):
        return f"its epoch is {ckpt['epoch']!r}, not an integer >= 0"
    return None


def _is_int(value, least):
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


def state_rows(state_dict, suffix, axis=0):
    """Size along `axis` of the 2-D weight named `suffix` (alone or after a dot) in `state_dict`, or None."""
    return next((value.shape[axis] for key, value in state_dict.items()
                 if (key == suffix or key.endswith("." + suffix)) and value.dim() == 2), None)


def _malformed_params(params, state):
    """What is wrong with the params that build the model, or None."""
    if "spa_enc_type" in params and not isinstance(params["spa_enc_type"], str):
        return f"its params' spa_enc_type is {params['spa_enc_type']!r}, not the name of an encoder"
    for key, rows in (("num_classes", state_rows(state, "class_emb.weight")),
                      ("num_users", state_rows(state, "user_emb.weight"))):
        value = params.get(key)
        if value is not None and not _is_int(value, 1):
            return f"its params' {key} is {value!r}, not an integer >= 1"
        if value is not None and rows is not None and value != rows:
            return f"its params' {key} is {value}, but its weights hold {rows}"
    extent = params.get("map_range")
    if extent is not None and not _valid_extent(extent):
        return (f"its params' map_range is {extent!r}, not the extent xmin xmax ymin ymax in degrees with xmin < xmax "
                f"and ymin < ymax (e.g. [-180, 180, -90, 90]) that the naive, rff and tile_ffn encoders normalise by")
    ids = params.get("rbf_anchor_pt_ids")
    if ids is not None and not (isinstance(ids, list) and all(_is_int(i, 0) for i in ids)):
        return "its params' rbf_anchor_pt_ids is not a list of training-row ids (integers >= 0)"
    return None


def _valid_extent(extent):
    try:
        values = [float(value) for value in extent if not isinstance(value, (bool, str))]
    except (TypeError, ValueError):
        return False
    return (len(values) == len(extent) == 4 and all(np.isfinite(values)) and values[0] < values[1]
            and values[2] < values[3])


def _malformed_records(ckpt, state):
    names = ckpt.get(CLASS_NAMES_KEY)
    rows = state_rows(state, "class_emb.weight")
    if names is not None and not (isinstance(names, list) and all(isinstance(name, str) for name in names)):
        return f"its {CLASS_NAMES_KEY} is not a list of class names (text)"
    if names is not None and rows is not None and len(names) != rows:
        return f"its {CLASS_NAMES_KEY} names {len(names)} classes, but its class head has {rows}"
    if WORLD_SIZE_KEY in ckpt and not _is_int(ckpt[WORLD_SIZE_KEY], 1):
        return f"its {WORLD_SIZE_KEY} is {ckpt[WORLD_SIZE_KEY]!r}, not a number of processes"
    data = ckpt.get(DATA_KEY)
    if data is not None and not (isinstance(data, dict) and all(
            isinstance(entry, dict) and isinstance(entry.get("path"), str) and _is_int(entry.get("size"), 0)
            and isinstance(entry.get("fingerprint"), str) for entry in data.values())):
        return f"its {DATA_KEY} is not a record of the files it was trained on ({{role: {{path, size, fingerprint}}}})"
    return None


def _wrapper_prefix(state_keys, expected_keys):
    """The prefix (e.g. DDP's 'module.') on every key beyond the model's, or None."""
    first = next(iter(state_keys), "")
    prefix = first[:first.index(".") + 1] if "." in first else ""
    if prefix and {key[len(prefix):] if key.startswith(prefix) else None for key in state_keys} == set(expected_keys):
        return prefix
    return None


def _count_mismatch(key, saved, wanted):
    kind = {"class_emb.weight": "classes", "user_emb.weight": "users"}.get(".".join(key.split(".")[-2:]))
    same_width = len(saved) == len(wanted) == 2 and saved[1] == wanted[1]
    return kind if kind and same_width else None


def load_state(model, state_dict, source="state_dict"):
    """Strict `model.load_state_dict`; ValueError listing missing, unexpected and mismatched keys."""
    expected = model.state_dict()
    missing = [key for key in expected if key not in state_dict]
    unexpected = [key for key in state_dict if key not in expected]
    shapes = {key: (tuple(state_dict[key].shape), tuple(value.shape)) for key, value in expected.items()
              if key in state_dict and tuple(state_dict[key].shape) != tuple(value.shape)}
    mismatched = [f"{key}: checkpoint {saved} vs model {wanted}" for key, (saved, wanted) in shapes.items()]
    problems = [f"{title} ({len(keys)}): {'; '.join(keys)}"
                for title, keys in (("missing keys", missing), ("unexpected keys", unexpected),
                                    ("shape mismatches", mismatched)) if keys]
    counts = {_count_mismatch(key, *pair): pair for key, pair in shapes.items()}
    if problems and not missing and not unexpected and None not in counts:
        differ = "; ".join(f"{saved[0]} {kind} in the checkpoint, {wanted[0]} {kind} in this run's training data"
                           for kind, (saved, wanted) in sorted(counts.items()))
        raise ValueError(f"{source}: the checkpoint was trained on other data ({differ}), e.g. another dataset "
                         f"or data folder with the same --model_dir; give this run its own --model_dir, or point "
                         f"CSP_DATA_DIR at the data the checkpoint was trained on: " + " | ".join(problems))
    prefix = _wrapper_prefix(state_dict, expected) if missing and unexpected else None
    if prefix:
        raise ValueError(f"{source}: every key of its state_dict carries the prefix {prefix!r} (saved from a wrapped "
                         f"model, e.g. DataParallel or DistributedDataParallel); strip it: "
                         f"{{key.removeprefix({prefix!r}): value for key, value in state_dict.items()}}")
    if problems:
        raise ValueError(f"{source}: the weights do not fit the model built from its flags "
                         f"(check --spa_enc_type, --unsuper_loss, --frequency_num, --num_hidden_layer, "
                         f"--hidden_dim, --num_filts, --use_layn): " + " | ".join(problems))
    model.load_state_dict(state_dict, strict=True)
