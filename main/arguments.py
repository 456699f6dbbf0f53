"""Command-line flags of CSP training and evaluation.

Every flag of the original `make_args_parser` keeps its name, type, default and meaning; yes/no flags are the
strings 'T' and 'F', turned into booleans by `update_params`. Flags added by this project are marked "(new)".
"""
import argparse
import errno
import os
import sys

import torch

from .paths import MAIN_DIR

DEFAULT_MODEL_DIR = "../models/"
BOOL_FLAGS = (
    "load_val_op", "use_layn", "skip_connection", "spa_enc_use_postmat", "balanced_train_loader",
    "use_date_feats", "load_cnn_predictions", "load_cnn_features", "load_cnn_features_train",
    "do_unsuper_train", "load_unsuper_model", "do_super_train", "load_super_model", "load_img", "do_epoch_save",
    "baseline_full_train", "compile", "bf16",
)


def make_args_parser():
    p = argparse.ArgumentParser(description="CSP: contrastive spatial pre-training and fine-tuning of a location encoder",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
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
        help="(new) --dataset custom: your classifier's (rows, classes) probabilities .npy; default: a linear probe")
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
        help="(new) training image features: device (one array on --device), mapped (left in the memory-mapped "
             "file, each batch's rows read by index) or auto (device when they take at most half of the device's "
             "free memory, else mapped)")
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


def update_params(params):
    """Turn the 'T'/'F' strings into booleans (in place) and clear `meta_type` where it has no meaning."""
    if params["dataset"] not in ("birdsnap", "nabirds"):
        params["meta_type"] = ""
    for name in BOOL_FLAGS:
        value = params[name]
        if isinstance(value, bool):
            continue
        if value not in ("T", "F"):
            raise ValueError(f"--{name} must be T or F, got {value!r}")
        params[name] = value == "T"
    return params


def default_params(argv=()):
    """The params dict of a run with command line `argv` (a list of strings), after `update_params`. Without
    --model_dir, the default `../models/` is taken relative to main/ (where the original ran), wherever the command
    starts; a --model_dir given is taken as given (relative to the current directory)."""
    parser = make_args_parser()
    params = vars(parser.parse_args(list(argv)))
    parser.set_defaults(model_dir=None)
    if parser.parse_args(list(argv)).model_dir is None:
        params["model_dir"] = os.path.join(os.path.normpath(MAIN_DIR / DEFAULT_MODEL_DIR), "")
    return update_params(params)


def resolve_device(name):
    """torch.device for a --device value; 'auto' picks the first GPU when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ValueError(f"--device {name!r} is not a torch device (try cpu, cuda:0 or auto): {err}") from None
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"--device {name}: this project runs on the CPU or a CUDA GPU only; use --device cpu, "
                         f"cuda:0 or auto")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: no CUDA GPU is available here; use --device cpu or --device auto")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"--device {name}: only {torch.cuda.device_count()} GPU(s) here; "
                         f"use --device cuda:0 or --device auto")
    return device


def describe_error(err):
    """The one-line message of a bad-input error: a ValueError's own; for an OSError (a file that cannot be read or
    written, a full disk) what failed on which path, and the fix."""
    if not isinstance(err, OSError) or err.errno is None:
        return str(err)
    where = f" {err.filename}" if err.filename is not None else ""
    permissions = "check the permissions of that path (an output folder: or choose another --model_dir)"
    file_in_the_way = "a file is where a folder is needed; choose another folder"
    fixes = {errno.EACCES: permissions, errno.EPERM: permissions,
             errno.EROFS: "the file system is read-only; choose another folder (--model_dir)",
             errno.ENOSPC: "the disk is full; free space or choose a folder on another disk (--model_dir)",
             errno.ENOENT: "check the path",
             errno.EEXIST: file_in_the_way, errno.ENOTDIR: file_in_the_way,
             errno.ENAMETOOLONG: "the file name, made from the flag values, is too long: give the flags "
                                 "(e.g. --lr) sensible values"}
    fix = fixes.get(err.errno, "check the path and the disk")
    return f"cannot access{where}: {err.strerror or err}; {fix}"


ALLOCATION_FAILED = ("not enough memory", "can't allocate memory", "Cannot allocate memory")


def is_out_of_memory(err):
    """True for an allocation that failed: MemoryError, torch.OutOfMemoryError (a GPU), or the CPU allocator's
    RuntimeError ("... not enough memory ..." / "... can't allocate memory ...")."""
    return (isinstance(err, (MemoryError, torch.OutOfMemoryError))
            or (isinstance(err, RuntimeError) and any(words in str(err) for words in ALLOCATION_FAILED)))


def describe_out_of_memory(err):
    """The one-line message of a failed allocation, with the flags that size the tensors."""
    what = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
    return (f"out of memory ({what}); lower --batch_size or --num_neg_rand_loc, use a smaller model (--num_filts, "
            f"--hidden_dim, --num_hidden_layer, --frequency_num), or keep the image features in their file "
            f"(--feature_storage mapped)")


def run_command(main):
    """Run a command-line entry point so that bad input — a ValueError, or an OSError (a file that is missing, cannot
    be read or written, a full disk), whose messages name the flag, value or file and the fix, or an allocation that
    failed (`is_out_of_memory`: flags too large for the machine) — ends it with that one-line message and exit
    status 2 instead of a traceback. CSP_TRACEBACK=1 in the environment shows the traceback."""
    try:
        main()
    except (ValueError, OSError, MemoryError, RuntimeError) as err:
        if os.environ.get("CSP_TRACEBACK") == "1" or (isinstance(err, RuntimeError) and not is_out_of_memory(err)):
            raise
        message = describe_out_of_memory(err) if is_out_of_memory(err) else describe_error(err)
        print(f"{os.path.basename(sys.argv[0])}: error: {message}", file=sys.stderr)
        sys.exit(2)
