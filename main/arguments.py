"""The flags of a run, known here only: the parser (the original's flags, and those marked "(new)"), which flags
define what a run computes, and `default_params`, which parses, converts ('T'/'F' to bool) and checks them once;
`run_command` turns bad input into one line and exit status 2.
"""
import argparse
import errno
import math
import os
import signal
import sys
import threading

import torch

from . import baselines
from . import distributed
from . import feature_store
from . import losses
from . import models
from . import position_encodings
from . import sampling
from . import spatial_splits
from .distributed import resolve_device
from .encoders import ACTIVATIONS, SPATIAL_ENCODERS
from .paths import DATASETS, MAIN_DIR

DEFAULT_MODEL_DIR = "../models/"
BOOL_FLAGS = (
    "load_val_op", "use_layn", "skip_connection", "spa_enc_use_postmat", "balanced_train_loader",
    "use_date_feats", "load_cnn_predictions", "load_cnn_features", "load_cnn_features_train",
    "do_unsuper_train", "load_unsuper_model", "do_super_train", "load_super_model", "load_img", "do_epoch_save",
    "baseline_full_train", "compile", "bf16", "mask_duplicate_negatives",
)
DATASET_NAMES = DATASETS + ("custom",)  # the bundle's datasets and your own table (own_data.py)
PRED_TYPES = ("full", "fewshot")
RESOLUTIONS = ("standard", "high_res", "pretrain")

# Which flags define what a run computes (a results file or checkpoint is reused only under equal ones):
# all but NOT_RUN_FLAGS: where a run happens, where its features are kept, whether its step is compiled, how often
# it logs, evaluates along the way or saves snapshots, whether it resumes, and the flags kept for compatibility only
NOT_RUN_FLAGS = ("device", "model_dir", "log_frequency", "eval_frequency", "unsuper_save_frequency", "do_epoch_save",
                 "load_unsuper_model", "load_super_model", "unsuper_dataset", "unsuper_meta_type",
                 "unsuper_eval_frequency", "load_val_op", "load_cnn_predictions", "load_cnn_features",
                 "load_cnn_features_train", "load_img", "feature_storage", "compile")
# flags that only fine-tuning and the evaluations read: a pre-trained checkpoint serves runs that differ in them
FINETUNING_FLAGS = ("num_epochs", "lr", "lr_decay", "train_sample_ratio", "train_sample_method", "cnn_pred_type",
                    "eval_split", "train_loss", "do_super_train")
# flags that only pre-training reads: they do not change a run with --unsuper_loss none
PRETRAINING_FLAGS = ("num_epochs_unsuper", "unsuper_lr", "unsuper_temp_inbatch", "unsuper_temp_negloc",
                     "unsuper_temp_simcse", "simcse_weight", "num_neg_rand_loc", "do_unsuper_train",
                     "mask_duplicate_negatives")
# flags under which a checkpoint may be resumed or evaluated with other values: the epoch counts (a run continues to
# more epochs; the checkpoint records those done) and which phases run
RESUME_FLAGS = ("num_epochs", "num_epochs_unsuper", "do_unsuper_train", "do_super_train")
# float flags that must be finite and >= 0, or finite and > 0
NONNEGATIVE_FLOATS = ("lr", "unsuper_lr", "weight_decay", "rand_sample_weight", "simcse_weight")
POSITIVE_FLOATS = ("lr_decay", "min_radius", "max_radius", "rbf_kernal_size", "unsuper_temp_inbatch",
                   "unsuper_temp_negloc", "unsuper_temp_simcse", "block_deg")
# integer flags and their least value
LEAST_INTS = {"batch_size": 1, "num_epochs": 0, "num_epochs_unsuper": 0, "eval_frequency": 1, "log_frequency": 1,
              "unsuper_save_frequency": 1, "max_num_exs_per_class": 1, "num_filts": 1, "hidden_dim": 1,
              "frequency_num": 1, "num_rbf_anchor_pts": 1, "num_hidden_layer": 0, "num_neg_rand_loc": 0}


def make_args_parser():
    p = argparse.ArgumentParser(description="CSP: contrastive spatial pre-training and fine-tuning of a location encoder",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter, allow_abbrev=False)
    add = p.add_argument

    # data
    add("--unsuper_dataset", type=str, default="inat_2018", help="unused; kept for compatibility")
    add("--unsuper_meta_type", type=str, default="ebird_meta", help="unused; kept for compatibility")
    add("--dataset", type=str, default="inat_2018",
        help="inat_2018, inat_2017, fmow, birdsnap, nabirds, yfcc, or custom (your own table, --data_table)")
    add("--meta_type", type=str, default="ebird_meta",
        help="birdsnap/nabirds metadata: orig_meta or ebird_meta (ignored for other datasets)")
    add("--eval_split", type=str, default="val", help="split of the final evaluation: val or test")
    add("--load_val_op", type=str, default="F",
        help="T/F: accepted for compatibility; the final-evaluation split (invalid entries kept) is always loaded")
    add("--cnn_model", type=str, default="inception_v3",
        help="image model whose features/predictions are read (folder and file-name tag)")
    add("--load_cnn_predictions", type=str, default="F",
        help="T/F: accepted for compatibility; the final-evaluation split's image predictions are always loaded")
    add("--load_cnn_features", type=str, default="F",
        help="T/F: accepted for compatibility; evaluation-split image features are never read (only the Tang et al. "
             "baseline, not reimplemented, used them)")
    add("--load_cnn_features_train", type=str, default="F",
        help="T/F: accepted for compatibility; training image features are loaded when --do_unsuper_train T "
             "with a pre-training loss, else not")
    add("--load_img", type=str, default="F", help="T/F: also return image file names (inat_2018)")
    add("--inat2018_resolution", type=str, default="standard",
        help="image-feature source: high_res, standard or pretrain")
    add("--cnn_pred_type", type=str, default="full",
        help="image predictions: full (fully supervised classifier) or fewshot (classifier trained on the same ratio)")
    add("--data_table", type=str, default=None,
        help="(new) --dataset custom: CSV or Parquet table of observations (image, lon, lat, label, user, date, split)")
    add("--features", type=str, default=None,
        help="(new) --dataset custom: image features from extract_features.py (.npy, its rows.csv beside it)")
    add("--label_set", type=str, default=None,
        help="(new) --dataset custom: text file of the class labels, one per line (default: the table's labels)")
    add("--image_predictions", type=str, default=None,
        help="(new) --dataset custom: your classifier's output, a .npy (one row per table row, one column per class "
             "of the label set) or a CSV / Parquet (image and one column per class name); default: a linear probe")
    add("--image_predictions_kind", type=str, default="probabilities", choices=("probabilities", "logits"),
        help="(new) --image_predictions holds probabilities (checked: finite, >= 0, rows summing to 1) or logits "
             "(scores before the softmax)")
    add("--split_method", type=str, default="random", choices=("random", "spatial_block"),
        help="(new) --dataset custom: how the rows without a split are drawn: random (a share of each label to val) "
             "or spatial_block (whole cells of --block_deg degrees to val)")
    add("--block_deg", type=float, default=10.0,
        help="(new) --dataset custom, --split_method spatial_block: cell size in degrees")

    # run
    add("--device", type=str, default="auto",
        help="torch device, e.g. cpu, cuda:0; auto = first GPU if present, else CPU")
    add("--model_dir", type=str, default=DEFAULT_MODEL_DIR,
        help="folder for checkpoints and logs (the default is taken relative to main/, wherever the command starts)")
    add("--num_epochs", type=int, default=30, help="fine-tuning (supervised) epochs")
    add("--num_epochs_unsuper", type=int, default=30, help="pre-training (unsupervised) epochs")
    add("--seed", type=int, default=0,
        help="(new) seed of every random draw: few-shot subsets, samplers, initialisation, dropout, negatives")
    add("--feature_storage", type=str, default="auto",
        help="(new) training image features: device (one array on --device), mapped (left in their file and "
             "streamed: pre-training batches drawn from shuffled blocks of consecutive rows, see docs/scaling.md) or "
             "auto (device when they take at most half of the device's free memory, else mapped)")
    add("--compile", type=str, default="F", help="(new) T/F: torch.compile the training step")
    add("--bf16", type=str, default="F",
        help="(new) T/F: bfloat16 autocast in the training steps (the sigmoid loss sums stay float32)")

    # location encoder
    add("--spa_enc_type", type=str, default="gridcell",
        help="gridcell, gridcellnorm, hexagridcell, theory, theorynorm, theorydiag, naive, rbf, rff, geo_net_fft, "
             "geo_net; (new) wrap_ffn, xyz, nerf, sphere, spheregrid, spheremixscale, spheregridmixscale, dft, "
             "tile_ffn, spherical_harmonics; or a baseline: no_prior, train_freq, grid, nn_knn, nn_dist, kde")
    add("--frequency_num", type=int, default=32, help="number of scales (frequencies) of the position encoding")
    add("--max_radius", type=float, default=1.0,
        help="largest scale lambda_max of the position encoding (degrees; radians for sphere* and dft)")
    add("--min_radius", type=float, default=0.000001,
        help="smallest scale lambda_min of the position encoding (degrees; radians for sphere* and dft); "
             "tile_ffn: the cell size (degrees)")
    add("--num_hidden_layer", type=int, default=1, help="hidden layers of the encoder's feed-forward network")
    add("--hidden_dim", type=int, default=512, help="width of the hidden layers")
    add("--num_rbf_anchor_pts", type=int, default=200, help="rbf: number of anchor points (training locations)")
    add("--rbf_kernal_size", type=float, default=1.0, help="rbf: kernel width in degrees; rff: covariance scale")
    add("--loc_encode", type=str, default="encode_cos_sin",
        help="geo_net input encoding: encode_cos_sin, encode_3D or encode_none")
    add("--num_filts", type=int, default=256, help="size D of the location embedding")
    add("--freq_init", type=str, default="geometric", help="frequency list: geometric, random or nerf")
    add("--spa_f_act", type=str, default="relu",
        help="activation of the feed-forward network: leakyrelu, relu, sigmoid, tanh or gelu")
    add("--map_range", nargs="+", type=float, default=[-180, 180, -90, 90],
        help="extent xmin xmax ymin ymax (degrees) used by naive/rff normalisation and maps")
    add("--use_layn", type=str, default="T", help="T/F: LayerNorm in the hidden layers")
    add("--skip_connection", type=str, default="T", help="T/F: residual connection in hidden layers of equal width")
    add("--spa_enc_use_postmat", type=str, default="T", help="T/F: theorydiag only, extra output linear layer")
    add("--use_date_feats", type=str, default="F", help="T/F: geo_net only, add date features")
    add("--date_encode", type=str, default="encode_cos_sin", help="geo_net date encoding: encode_cos_sin or encode_none")
    add("--spa_enc_net", type=str, default="ffn",
        help="(new) network after the position encoding: ffn (the original's) or siren (sine layers, SIREN init)")
    add("--legendre_poly_num", type=int, default=10,
        help="(new) spherical_harmonics: number L of Legendre degrees 0..L-1 (L^2 features)")

    # losses
    add("--train_loss", type=str, default="full_loss", help="fine-tuning loss: full_loss or full_loss_user")
    add("--neg_rand_type", type=str, default="spherical",
        help="random negative locations: spherical (uniform on the sphere), sphericalold (the original's "
             "2019 sampler, used by the paper's scripts) or uniform (uniform in lon/lat)")
    add("--train_sample_ratio", type=float, default=1.0,
        help="fraction of the labelled training data used for fine-tuning (few-shot when 0 < r < 1)")
    add("--train_sample_method", type=str, default="stratified-fix",
        help="few-shot subset: {stratified|random}-{fix|random}; -fix reuses a saved subset")
    add("--unsuper_loss", type=str, default="none",
        help="pre-training loss: none, l2regress, imgcontloss, imgcontlossnolocneg, imgcontlosssimcse, "
             "contsoftmax or contsoftmaxsym")
    add("--num_neg_rand_loc", type=int, default=1, help="random negative locations per sample (pre-training)")
    add("--rand_sample_weight", type=float, default=1.0, help="weight of the random-location loss term")
    add("--simcse_weight", type=float, default=0.0, help="weight of the SimCSE (dropout view) loss term")
    add("--unsuper_lr", type=float, default=0.001, help="pre-training learning rate")
    add("--do_unsuper_train", type=str, default="F", help="T/F: run pre-training")
    add("--load_unsuper_model", type=str, default="F", help="T/F: load the pre-trained checkpoint if it exists")
    add("--unsuper_temp_inbatch", type=float, default=1, help="temperature of the in-batch term (contsoftmax*)")
    add("--unsuper_temp_negloc", type=float, default=1, help="temperature of the random-location term (contsoftmax*)")
    add("--unsuper_temp_simcse", type=float, default=1, help="temperature of the SimCSE term (contsoftmax*)")
    add("--unsuper_eval_frequency", type=int, default=10, help="unused; kept for compatibility")
    add("--mask_duplicate_negatives", type=str, default="F",
        help="(new) T/F: leave pairs of a batch with the same location or the same image features out of the "
             "pre-training losses' in-batch terms (F: they are each other's negatives, as in the original)")
    add("--baseline_full_train", type=str, default="F",
        help="(new) T/F: a baseline --spa_enc_type is fitted on all training labels, not on the few-shot subset of "
             "--train_sample_ratio (the original's behaviour)")

    # optimisation
    add("--lr", type=float, default=0.001, help="fine-tuning learning rate")
    add("--lr_decay", type=float, default=0.98, help="per-epoch multiplicative learning-rate decay (fine-tuning)")
    add("--weight_decay", type=float, default=0.0, help="Adam weight decay")
    add("--dropout", type=float, default=0.5, help="dropout probability in the feed-forward network")
    add("--batch_size", type=int, default=1024, help="batch size")
    add("--log_frequency", type=int, default=50, help="log the running loss every N batches")
    add("--max_num_exs_per_class", type=int, default=100, help="class-balanced sampler: samples per class per epoch")
    add("--balanced_train_loader", type=str, default="T", help="T/F: class-balanced sampling of training batches")
    add("--eval_frequency", type=int, default=5, help="evaluate every N fine-tuning epochs")
    add("--unsuper_save_frequency", type=int, default=5, help="pre-training snapshot period (with --do_epoch_save T)")
    add("--load_super_model", type=str, default="F", help="T/F: load the fine-tuned checkpoint if it exists")
    add("--do_super_train", type=str, default="T", help="T/F: run fine-tuning")
    add("--do_epoch_save", type=str, default="F", help="T/F: save pre-training snapshots '-Epoch-{e}'")
    return p


def default_params(argv=()):
    """The params dict of a run with command line `argv` (a list of str), parsed and converted (`parse_flags`) and
    checked (`check_params`): ValueError naming the flag for an unknown flag, a value that does not parse, or one
    the run cannot use. Nothing is read or written."""
    params = parse_flags(argv)
    check_params(params)
    return params


def parse_flags(argv=()):
    """The params of command line `argv`, not checked: 'T'/'F' as booleans, `meta_type` cleared where it has no
    meaning. Without --model_dir, the default `../models/` is taken relative to main/ (where the original ran),
    wherever the command starts; a --model_dir given is taken as given."""
    argv = list(argv)
    parser = make_args_parser()
    parser.exit_on_error = False
    try:
        params, unknown = parser.parse_known_args(argv)
    except argparse.ArgumentError as err:
        raise ValueError(f"{err} (python main/train_unsuper.py --help lists the flags)") from None
    if unknown:
        raise ValueError(f"{' '.join(unknown)}: not a flag of train_unsuper.py (python main/train_unsuper.py --help "
                         f"lists them)")
    params = vars(params)
    parser.set_defaults(model_dir=None)
    if parser.parse_known_args(argv)[0].model_dir is None:
        params["model_dir"] = os.path.join(os.path.normpath(MAIN_DIR / DEFAULT_MODEL_DIR), "")
    if params["dataset"] not in ("birdsnap", "nabirds"):
        params["meta_type"] = ""
    for name in BOOL_FLAGS:
        if params[name] not in ("T", "F"):
            raise ValueError(f"--{name} must be T or F, got {params[name]!r}")
        params[name] = params[name] == "T"
    return params


def is_baseline(params):
    """True for the non-neural priors of baselines.py given as --spa_enc_type (no model, no training)."""
    return params["spa_enc_type"] in baselines.BASELINE_NAMES


def _choices(flag, value, valid):
    if value not in valid:
        raise ValueError(f"--{flag} {value!r} is unknown; valid values: {', '.join(valid)}")


def check_params(params):
    """ValueError naming the flag and its valid values for every flag value a run cannot use, including flags that
    build no location encoder (`models.check_model_flags`) and a --device this machine lacks."""
    _choices("dataset", params["dataset"], DATASET_NAMES)
    _choices("spa_enc_type", params["spa_enc_type"], tuple(SPATIAL_ENCODERS) + ("geo_net",) + baselines.BASELINE_NAMES)
    _choices("unsuper_loss", params["unsuper_loss"], ("none",) + losses.UNSUPER_LOSSES)
    _choices("train_loss", params["train_loss"], losses.TRAIN_LOSSES)
    _choices("neg_rand_type", params["neg_rand_type"], losses.NEG_RAND_TYPES)
    _choices("cnn_pred_type", params["cnn_pred_type"], PRED_TYPES)
    _choices("inat2018_resolution", params["inat2018_resolution"], RESOLUTIONS)
    _choices("train_sample_method", params["train_sample_method"], sampling.METHODS)
    _choices("feature_storage", params["feature_storage"], feature_store.STORAGES)
    _choices("freq_init", params["freq_init"], position_encodings.FREQ_INITS)
    _choices("spa_f_act", params["spa_f_act"], tuple(ACTIVATIONS))
    _choices("loc_encode", params["loc_encode"], tuple(models.LOC_ENCODE_DIMS))
    _choices("date_encode", params["date_encode"], tuple(models.DATE_ENCODE_DIMS))
    if params["dataset"] == "custom" and not params["data_table"]:
        raise ValueError("--dataset custom needs --data_table (a CSV or Parquet table: image, lon, lat, label, ...)")
    if not 0 < params["train_sample_ratio"] <= 1:
        raise ValueError(f"--train_sample_ratio must be in (0, 1] (1 = all training data), "
                         f"got {params['train_sample_ratio']}")
    for flag, least in LEAST_INTS.items():
        if params[flag] < least:
            raise ValueError(f"--{flag} must be at least {least}, got {params[flag]}")
    if not 0 <= params["seed"] < 2 ** 63:
        raise ValueError(f"--seed must be in [0, 2**63), got {params['seed']}")
    for flag in NONNEGATIVE_FLOATS:
        if not (math.isfinite(params[flag]) and params[flag] >= 0):
            raise ValueError(f"--{flag} must be a finite number >= 0, got {params[flag]}")
    for flag in POSITIVE_FLOATS:
        if not (math.isfinite(params[flag]) and params[flag] > 0):
            raise ValueError(f"--{flag} must be a finite number > 0, got {params[flag]}")
    spatial_splits.check_block_deg(params["block_deg"])
    if not params["min_radius"] < params["max_radius"]:
        raise ValueError(f"--min_radius ({params['min_radius']}) must be smaller than --max_radius "
                         f"({params['max_radius']}): they are the smallest and largest scales of the encoding")
    if not 0 <= params["dropout"] < 1:
        raise ValueError(f"--dropout must be in [0, 1), got {params['dropout']}")
    extent = params["map_range"]
    if not all(math.isfinite(value) for value in extent):
        raise ValueError(f"--map_range needs finite values (degrees), got {extent}")
    if len(extent) != 4:
        raise ValueError(f"--map_range needs 4 values, xmin xmax ymin ymax in degrees, got {extent}")
    if not (extent[0] < extent[1] and extent[2] < extent[3]):
        raise ValueError(f"--map_range xmin xmax ymin ymax needs xmin < xmax and ymin < ymax, got {extent}")
    _check_pretraining(params)
    if not is_baseline(params):
        models.check_model_flags(params)
    resolve_device(params["device"])


def _check_pretraining(params):
    loss = params["unsuper_loss"]
    if loss in losses.RANDOM_LOCATION_LOSSES and params["rand_sample_weight"] != 0 and params["num_neg_rand_loc"] < 1:
        raise ValueError(f"--num_neg_rand_loc must be >= 1 for --unsuper_loss {loss}, got {params['num_neg_rand_loc']}")
    if loss.startswith("imgcontloss") and params["batch_size"] * distributed.requested_world_size() < 2:
        raise ValueError(f"--unsuper_loss {loss} needs batches of at least 2 samples, got --batch_size "
                         f"{params['batch_size']}")


def describe_error(err, output_flag=None):
    """The one-line message of a bad-input error: a ValueError's own; an OSError's path, cause and fix, naming
    `output_flag` (the command's output option, e.g. '--model_dir') where another output place is the fix."""
    if not isinstance(err, OSError) or err.errno is None:
        return str(err)
    where = f" {err.filename}" if err.filename is not None else ""
    flag = f" ({output_flag})" if output_flag else ""
    permissions = f"check the permissions of that path, or write elsewhere{flag}"
    file_in_the_way = "a file is where a folder is needed; choose another folder"
    fixes = {errno.EACCES: permissions, errno.EPERM: permissions,
             errno.EROFS: f"the file system is read-only; write elsewhere{flag}",
             errno.ENOSPC: f"the disk is full; free space or write to another disk{flag}",
             errno.ENOENT: "check the path",
             errno.EEXIST: file_in_the_way, errno.ENOTDIR: file_in_the_way,
             errno.ENAMETOOLONG: "the file name, made from the flag values, is too long: give the flags "
                                 "(e.g. --lr) sensible values"}
    fix = fixes.get(err.errno, "check the path and the disk")
    return f"cannot access{where}: {err.strerror or err}; {fix}"


ALLOCATION_FAILED = ("not enough memory", "can't allocate memory", "Cannot allocate memory")


def is_out_of_memory(err):
    """True for a failed allocation: MemoryError, torch.OutOfMemoryError, or the CPU allocator's RuntimeError."""
    return (isinstance(err, (MemoryError, torch.OutOfMemoryError))
            or (isinstance(err, RuntimeError) and any(words in str(err) for words in ALLOCATION_FAILED)))


def describe_out_of_memory(err):
    """The one-line message of a failed allocation, with the flags that size the tensors."""
    what = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
    return (f"out of memory ({what}); lower --batch_size or --num_neg_rand_loc, use a smaller model (--num_filts, "
            f"--hidden_dim, --num_hidden_layer, --frequency_num), or keep the image features in their file "
            f"(--feature_storage mapped)")


def error_line(err, output_flag=None):
    """The one line `run_command` prints for `err`; `output_flag` as for `describe_error`."""
    return describe_out_of_memory(err) if is_out_of_memory(err) else describe_error(err, output_flag)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the command is (as Ctrl-C raises KeyboardInterrupt), so temporary files are removed."""


def _terminate(signum, frame):
    raise Terminated()


def run_command(main, output_flag=None):
    """Run a command's `main()`; a ValueError, OSError or failed allocation ends it with a one-line message and exit
    status 2 (CSP_TRACEBACK=1: the traceback; `output_flag`: the command's output option, named in the fixes); Ctrl-C
    or SIGTERM with one line and exit status 130 or 143. Under torchrun process 0 prints the line and the others exit
    after a short delay without a word (`distributed.ProcessError`: every process that meets it prints it)."""
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if main_thread else None
    try:
        main()
    except KeyboardInterrupt as stop:
        what = "SIGTERM" if isinstance(stop, Terminated) else "Ctrl-C"
        print(f"{os.path.basename(sys.argv[0])}: stopped by {what}; files are written under a temporary name and "
              f"renamed when complete, so none is left half-written", file=sys.stderr)
        sys.exit(143 if isinstance(stop, Terminated) else 130)
    except (ValueError, OSError, MemoryError, RuntimeError) as err:
        if os.environ.get("CSP_TRACEBACK") == "1" or (isinstance(err, RuntimeError) and not is_out_of_memory(err)):
            raise
        if distributed.process_rank() == 0 or isinstance(err, distributed.ProcessError):
            print(f"{os.path.basename(sys.argv[0])}: error: {error_line(err, output_flag)}", file=sys.stderr)
        else:
            distributed.wait_for_process_0()
        sys.exit(2)
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
