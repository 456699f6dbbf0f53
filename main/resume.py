"""Resuming a run: which checkpoint it loads (--load_super_model T before --load_unsuper_model T),
whether its flags and data fit, and what it brings. A checkpoint's `epoch` counts completed epochs of its phase; an
original one counts as finished pre-training, or as `epoch − 1` fine-tuning epochs.
"""
import hashlib
import logging
import os
from pathlib import Path

import numpy as np

from . import checkpoints
from . import datasets
from . import distributed
from . import run_flags
from .arguments import FINETUNING_FLAGS, RESUME_FLAGS, default_params
from .checkpoints import CHECKPOINT_PHASE_KEY, CLASS_NAMES_KEY, DATA_KEY, FINETUNING, PRETRAINING, WORLD_SIZE_KEY
from .results import read_results

logger = logging.getLogger(__name__)

# a file's fingerprint: sha256 of the whole file up to FINGERPRINT_WHOLE bytes, else of FINGERPRINT_BLOCKS blocks of
# FINGERPRINT_BLOCK bytes spread evenly from its start to its end
FINGERPRINT_WHOLE = 32 * 2 ** 20
FINGERPRINT_BLOCK, FINGERPRINT_BLOCKS = 2 ** 20, 32


def file_fingerprint(path):
    """(size in bytes, 16 hex digits of the sha256 of the file or of sampled blocks)."""
    size = os.path.getsize(path)
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        if size <= FINGERPRINT_WHOLE:
            digest.update(handle.read())
        else:
            for block in range(FINGERPRINT_BLOCKS):
                handle.seek((size - FINGERPRINT_BLOCK) * block // (FINGERPRINT_BLOCKS - 1))
                digest.update(handle.read(FINGERPRINT_BLOCK))
    return size, digest.hexdigest()[:16]


def data_record(params, data):
    """{"files": {role: {path, size, fingerprint, pretraining}}, "class_names": [...]} of a run."""
    files = {}
    for role, path, pretraining in datasets.input_files(params, features=data.train.feats is not None):
        size, fingerprint = file_fingerprint(path)
        files[role] = {"path": str(Path(path).resolve()), "size": size, "fingerprint": fingerprint,
                       "pretraining": pretraining}
    return {"files": files, "class_names": [str(data.classes.get(i, "")) for i in range(data.num_classes)]}


def checkpoints_to_load(params, device, record):
    """(pre-training, fine-tuned) checkpoint to load, (path, dict) or None each. ValueError for
    one made with other flags or data."""
    finetuned = _find(params, "load_super_model", params["model_file_name"], device, record)
    pretrained = None if finetuned else _find(params, "load_unsuper_model", params["unsuper_model_file_name"],
                                              device, record)
    return pretrained, finetuned


def _find(params, flag, path, device, record):
    if not params[flag] or path is None:
        return None
    existing = checkpoints.find_checkpoint(path)
    if existing is None:
        _log_no_checkpoint(params, flag, path)
        return None
    checkpoint = checkpoints.load_checkpoint(existing, device)
    check_flags(params, existing, checkpoint["params"], flag)
    check_data(existing, checkpoint, record, flag)
    return existing, checkpoint


def check_data(path, checkpoint, record, flag):
    """ValueError naming the files and class names in which `record` differs from the checkpoint at
    `path`; a warning for a checkpoint that records no data."""
    recorded = checkpoint.get(DATA_KEY)
    if recorded is None:
        logger.warning("%s does not record the data it was trained on (written by the original code or an earlier "
                       "version of this one), so this run cannot check that it is this data", path)
        return
    pretrained = flag == "load_unsuper_model"
    changes = [_file_change(role, now, recorded[role]) for role, now in record["files"].items()
               if role in recorded and (now["pretraining"] or not pretrained)
               and (now["size"], now["fingerprint"]) != (recorded[role]["size"], recorded[role]["fingerprint"])]
    names = checkpoint.get(CLASS_NAMES_KEY)
    if not pretrained and names is not None and names != record["class_names"]:
        changes.append(_class_change(names, record["class_names"]))
    if changes:
        raise ValueError(f"{path} was trained on other data ({'; '.join(changes)}); it is neither resumed nor "
                         f"evaluated on this data: run with the data it was trained on, give this run another "
                         f"--model_dir, or --{flag} F to train anew (its files are then overwritten)")


def _file_change(role, now, then):
    what = "other content" if now["size"] == then["size"] else f"{then['size']:,} bytes then, {now['size']:,} now"
    if now["path"] == then["path"]:
        return f"{role} {now['path']} has changed since ({what})"
    return f"{role} is {now['path']} here, {then['path']} when it was trained ({what})"


def _class_change(then, now):
    if len(then) != len(now):
        return f"{len(then)} classes when it was trained, {len(now)} here"
    differ = [index for index, (old, new) in enumerate(zip(then, now)) if old != new]
    return (f"class {differ[0]} is {now[differ[0]]!r} here, {then[differ[0]]!r} when it was trained "
            f"({len(differ)} of {len(now)} class ids name other classes: a reordered or edited label set?)")


def check_flags(params, path, recorded, flag):
    """ValueError naming the result-changing flags in which the checkpoint at `path` differs from the run
    (unrecorded flags match at their default); the original's checkpoints only get a warning."""
    ignore = (RESUME_FLAGS + ("baseline_full_train",)  # a model's checkpoint: no baseline
              + (FINETUNING_FLAGS if flag == "load_unsuper_model" else ()))
    defaults = default_params()
    ours = {name: params[name] for name in defaults}
    original = CHECKPOINT_PHASE_KEY not in recorded
    ignore += tuple(name for name in ours if name not in recorded and (original or ours[name] == defaults[name]))
    differences = run_flags.flag_differences(ours, recorded, ignore)
    if differences and original:
        logger.warning("%s (a checkpoint of the original code) records other flags: %s", path,
                       run_flags.describe(differences))
    elif differences:
        raise ValueError(f"{path} was made with other flags ({run_flags.describe(differences)}); it is neither "
                         f"resumed nor evaluated under these: run with the flags it was made with, give this run "
                         f"another --model_dir, or --{flag} F to train anew (its files are then overwritten)")


def _log_no_checkpoint(params, flag, path):
    finetuned = flag == "load_super_model"
    what = "fine-tuned" if finetuned else "pre-trained"
    if params["do_super_train" if finetuned else "do_unsuper_train"]:
        logger.info("No %s checkpoint to resume from yet (%s): %s starts at epoch 0", what, path,
                    FINETUNING if finetuned else PRETRAINING)
    elif finetuned:
        logger.warning("--load_super_model T but %s does not exist and --do_super_train F: the evaluation "
                       "uses a model that was not fine-tuned", path)
    else:
        logger.warning("--load_unsuper_model T but %s does not exist and --do_unsuper_train F: fine-tuning "
                       "starts from an encoder that was not pre-trained", path)


def rbf_anchors(checkpoint, train, count, rng):
    """(ids as `params['rbf_anchor_pt_ids']`, rows of `train`) of the rbf anchors: the checkpoint's,
    else `count` rows drawn with `rng`."""
    stored = checkpoint[1]["params"].get("rbf_anchor_pt_ids") if checkpoint is not None else None
    if stored is not None:
        try:
            rows = train.from_original(stored)
        except ValueError as err:
            raise ValueError(f"{checkpoint[0]}: its rbf anchors do not fit this training set ({err}); it was "
                             f"trained on other data") from None
        if (rows < 0).any():
            raise ValueError(f"{checkpoint[0]}: its rbf anchor at training row {stored[np.argmax(rows < 0)]} "
                             f"(of the original code's rows) is a row this project drops for NaN or out-of-range "
                             f"coordinates, so the anchor's location is unknown; fix that row's coordinates")
        return [int(i) for i in stored], rows
    if not 1 <= count <= len(train):
        raise ValueError(f"--num_rbf_anchor_pts must be between 1 and the {len(train)} training samples, got {count}")
    rows = np.sort(rng.choice(len(train), count, replace=False))
    return train.to_original(rows).tolist(), rows


def image_feature_width(checkpoint, params, data_dir):
    """Width of the training image features: from `checkpoint`, else the file's header."""
    if checkpoint is not None:
        state = checkpoint[1]["state_dict"]
        if "img_dec.weight" in state:
            return state["img_dec.weight"].shape[1]
        if "loc_dec.weight" in state:
            return state["loc_dec.weight"].shape[0]
    if params["dataset"] == "custom":
        path = Path(params["features"] or "(no --features given)")
    else:
        path = data_dir / datasets.feature_file(params["dataset"], "train", params["inat2018_resolution"],
                                                params["cnn_model"])
    if not path.is_file():
        raise FileNotFoundError(f"--unsuper_loss {params['unsuper_loss']}: the model's image head needs the "
                                f"width of the training image features, but {path} does not exist")
    return np.load(path, mmap_mode="r").shape[1]


def load(checkpoint, phase, model, optimizer, params):
    """Load weights and optimiser state of `checkpoint` (path, dict) of `phase`; returns {phase: completed
    epochs}. ValueError when it holds more epochs than the flags ask."""
    path, ckpt = checkpoint
    _load_weights(model, path, ckpt["state_dict"], params["spa_enc_type"])
    if ckpt["optimizer"] is not None:
        load_optimizer(optimizer, ckpt["optimizer"], path)
    ours = ckpt["params"].get(CHECKPOINT_PHASE_KEY) == phase
    flag = "num_epochs_unsuper" if phase == PRETRAINING else "num_epochs"
    if ours and ckpt["epoch"] > params[flag]:
        raise ValueError(f"{path} holds {ckpt['epoch']} completed {phase} epochs, more than --{flag} "
                         f"{params[flag]}; its results would be those of {ckpt['epoch']} epochs: run with "
                         f"--{flag} {ckpt['epoch']} (or more), or give this run another --model_dir")
    continues = params["do_unsuper_train" if phase == PRETRAINING else "do_super_train"]
    if ours and continues and ckpt["epoch"] < params[flag]:
        _check_world_size(path, ckpt.get(WORLD_SIZE_KEY), phase, ckpt["epoch"], params[flag], params["batch_size"])
    if phase == PRETRAINING:
        return {PRETRAINING: ckpt["epoch"] if ours else params["num_epochs_unsuper"]}
    return {PRETRAINING: params["num_epochs_unsuper"], FINETUNING: ckpt["epoch"] if ours else max(ckpt["epoch"] - 1, 0)}


def _check_world_size(path, recorded, phase, done, total, batch_size):
    """ValueError when a phase would continue with another number of processes."""
    world = distributed.world_size()
    if recorded is None:
        logger.warning("%s does not record how many processes wrote it; %s continues with %d, and its global batch "
                       "changes mid-phase if that number differs", path, phase, world)
    elif recorded != world:
        raise ValueError(f"{path} was written by {recorded} process(es) after {done} of {total} {phase} epochs; "
                         f"continuing with {world} would change the global batch mid-phase ({recorded * batch_size} "
                         f"-> {world * batch_size} rows): resume with {recorded} process(es) (torchrun "
                         f"--nproc_per_node {recorded}, or no torchrun for 1), or give this run another --model_dir")


def load_optimizer(optimizer, state, path):
    """Load a checkpoint's Adam `state`, keeping this run's fused / foreach flags."""
    groups = optimizer.param_groups
    saved = state["param_groups"]
    sizes = [len(group["params"]) for group in saved]
    if sizes != [len(group["params"]) for group in groups]:
        raise ValueError(f"{path}: the optimiser state holds {sizes} parameters, the model has "
                         f"{[len(group['params']) for group in groups]}; it was written for another model")
    keep = ("fused", "foreach", "capturable", "differentiable")
    optimizer.load_state_dict({"state": state["state"],
                               "param_groups": [{**old, **{key: new[key] for key in keep if key in new}}
                                                for old, new in zip(saved, groups)]})


def earlier_evaluations(results_file, epochs_done):
    """The evaluations in `results_file` of fine-tuning epochs before `epochs_done`."""
    results = read_results(results_file)
    return [] if results is None else [entry for entry in results["evaluations"]
                                       if entry["epoch"] is not None and entry["epoch"] < epochs_done]


def reload_finetuned(model, params, device):
    """Load the fine-tuned checkpoint's weights into `model` (a warning when the file is gone)."""
    path = checkpoints.find_checkpoint(params["model_file_name"])
    if path is None:
        logger.warning("Cannot load model since it not exist - %s (removed during the run?); evaluating "
                       "the model in memory", params["model_file_name"])
    else:
        _load_weights(model, path, checkpoints.load_checkpoint(path, device)["state_dict"], params["spa_enc_type"])


def _load_weights(model, path, state_dict, spa_enc_type):
    logger.info("\n%s", spa_enc_type)
    logger.info(" Model :\t%s", os.path.basename(path))
    checkpoints.load_state(model, state_dict, source=path)
