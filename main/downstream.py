"""Downstream evaluation of frozen location encoders: what their embeddings predict about a place.

    python main/downstream.py                                  # the default encoders × tasks × random / spatial_block
    python main/downstream.py --demo_dir demo                  # + the demo's CSP and Sup. Only checkpoints
    python main/downstream.py --checkpoint mine=run.pth.tar --tasks elevation country --split_methods buffered
    python main/downstream.py --table obs.csv                  # your own task: columns lon, lat, target
    python main/downstream.py -- --frequency_num 16            # flags after -- build the untrained encoders

For each task (`downstream_tasks`) and encoder, the embeddings of the task's points are computed once (frozen,
eval mode); for each fold of each split (`spatial_splits.fold_indices`: random, spatial_block, buffered) a probe
is fitted on the training part and scored on the held-out part: `linear` (logistic regression, C = 1 / ridge,
alpha by leave-one-out CV), `mlp` (one hidden layer of 256, early stopping) and `knn` (10 nearest neighbours, a
reference), each after standardising the embedding (and the target values).
Classes are scored by accuracy and macro-F1, values by R² and MAE; the table gives mean ± std over the folds.

Encoders (`--encoders`, names): `raw` (lon, lat), any `encoders.SPATIAL_ENCODERS` name (the position encoding
alone, untrained, with the fMoW script's scales unless flags after -- say otherwise; `xyz` is the point on the unit
sphere; encoders without a separate encoding give their untrained output), `geoclip` (GeoCLIP's pretrained encoder
from the installed wheel). `--checkpoint NAME=PATH`: a checkpoint of this project, the original or TorchSpatial
(`models.load_location_encoder`), a SatCLIP checkpoint (`satclip`) or a GeoCLIP weight file (`geoclip`).
`--demo_dir`: the demo's pre-trained CSP encoder and its fine-tuned CSP-MC-BLD and Sup. Only (grid) models.
Writes `downstream.md` and `downstream.csv` (one row per encoder, task, split, probe and metric) to --out_dir,
never over an earlier run's unless --overwrite.
"""
import argparse
import errno
import json
import logging
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.compose import TransformedTargetRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.metrics import accuracy_score, f1_score, mean_absolute_error, r2_score
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

if not __package__:  # run as a script (`python downstream.py`): its folder is imported as the package csp
    __package__ = __import__("as_package").PACKAGE
from . import downstream_tasks
from . import geoclip
from . import models
from . import satclip
from . import spatial_splits
from .arguments import default_params, resolve_device, run_command
from .encoders import SPATIAL_ENCODERS, EncodingThenNetwork, build_spatial_encoder
from .paths import atomic_write
from .predict import takes_dates

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT_DIR = ROOT / "downstream"
DEFAULT_ENCODERS = ("raw", "xyz", "gridcell", "spherical_harmonics", "geoclip")
DEFAULT_SPLITS = ("random", "spatial_block")
PROBES = ("linear", "mlp", "knn")
DEFAULT_FOLDS = 5
DEFAULT_BUFFER_KM = 100.0
# the scales of the fMoW run script (the demo's encoders), for the untrained position encodings
UNTRAINED_FLAGS = ("--frequency_num", "32", "--max_radius", "360", "--min_radius", "0.1")
METRICS = {"class": ("accuracy", "macro_f1"), "value": ("r2", "mae")}
ALL_METRICS = METRICS["class"] + METRICS["value"]
BATCH_SIZE = 8192
KNN_NEIGHBOURS = 10
SEED_LIMIT = 2 ** 32  # scikit-learn's random_state (KFold, the MLPs) takes seeds in [0, 2**32)
OUTPUT_NAMES = ("downstream.md", "downstream.csv")


# ----------------------------------------------------------------------------------------------------------------
# encoders: name → function (N, 2) float64 (lon, lat) degrees → (N, D) float32 numpy embeddings

def _module_embedder(module, device):
    def embed(lonlat):
        coords = torch.as_tensor(lonlat, dtype=torch.float32, device=device)
        with torch.no_grad():
            return torch.cat([module(coords[i:i + BATCH_SIZE]) for i in range(0, len(coords), BATCH_SIZE)]).cpu()
    return embed


def untrained_encoder(name, flags=(), seed=0):
    """The position encoding of `--spa_enc_type name` alone (its untrained output where it has no separate
    encoding), with UNTRAINED_FLAGS, then `flags`; rbf anchors are drawn uniformly on the sphere with `seed`."""
    params = default_params(["--spa_enc_type", name, *UNTRAINED_FLAGS, "--seed", str(seed), *flags])
    anchors = None
    if name == "rbf":
        rng = np.random.default_rng(seed)
        count = params["num_rbf_anchor_pts"]
        anchors = np.stack([rng.uniform(-180, 180, count), np.degrees(np.arcsin(rng.uniform(-1, 1, count)))], 1)
    torch.manual_seed(seed)
    encoder = build_spatial_encoder(params, anchors).eval()
    return encoder.encode if isinstance(encoder, EncodingThenNetwork) else encoder


def load_checkpoint_encoder(path, device="cpu"):
    """An embedding module for the checkpoint at `path` in any format this module reads (module doc). ValueError
    for encoders that need more than (lon, lat): a model trained with dates, an rbf .pth.tar without its anchors."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"--checkpoint: no file at {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # not a plain torch file: let the CSP loader give its message
        ckpt = None
    if geoclip.is_geoclip_state(ckpt):
        return geoclip.geoclip_from_state(ckpt, path, device)
    if satclip.is_satclip_checkpoint(ckpt):
        return satclip.satclip_from_checkpoint(ckpt, path, device)
    if isinstance(ckpt, dict) and isinstance(ckpt.get("params"), dict) and ckpt["params"].get("spa_enc_type") == "rbf":
        raise ValueError(f"--checkpoint {path}: an rbf encoder needs its anchor points (training locations), which a "
                         f".pth.tar does not hold; export it with them (python main/export.py --checkpoint {path} "
                         f"--anchors ANCHORS.npy --to safetensors --out rbf.safetensors) and give that file")
    encoder = models.load_location_encoder(path, device)
    if takes_dates(encoder):
        raise ValueError(f"--checkpoint {path}: this geo_net model was trained with dates (--use_date_feats T), so "
                         f"its embedding needs a date, which the downstream tasks lack; give a model trained "
                         f"without dates")
    return encoder.embed


def demo_checkpoints(demo_dir, seed=0):
    """{name: path} of the demo's encoders in `demo_dir` (its --out_dir): 'CSP pre-trained (demo)',
    'CSP-MC-BLD (demo)', 'Sup. Only (demo)', read from the runs' results documents in runs/seed{seed}/."""
    run_dir = Path(demo_dir) / "runs" / f"seed{seed}"
    found = {}
    for path in sorted(run_dir.glob("*.results.json")):
        results = json.loads(path.read_text())
        files, pretrained = results["files"], results["params"]["unsuper_loss"] != "none"
        if pretrained:
            found["CSP pre-trained (demo)"] = files["unsuper_model_file_name"]
        found["CSP-MC-BLD (demo)" if pretrained else "Sup. Only (demo)"] = files["model_file_name"]
    if len(found) < 3:
        raise ValueError(f"--demo_dir {demo_dir}: no finished demo runs in {run_dir}; run the demo first "
                         f"(python main/demo.py --out_dir {demo_dir})")
    return found


def build_encoders(names=DEFAULT_ENCODERS, checkpoints=(), demo_dir=None, flags=(), seed=0, device="cpu"):
    """{label: embed function} for encoder `names`, `checkpoints` [(label, path)] and the demo's (module doc)."""
    device = resolve_device(device)
    encoders = {}
    demo = list(demo_checkpoints(demo_dir, seed).items()) if demo_dir is not None else []
    labels = [{"raw": "raw", "geoclip": "GeoCLIP"}.get(name, f"{name} (untrained)") for name in names]
    labels += [label for label, _ in demo]
    for label, path in checkpoints:
        if label in labels:
            raise ValueError(f"--checkpoint {label}={path}: the name {label!r} is already an encoder's; give each "
                             f"--checkpoint its own NAME")
        labels.append(label)
    for name in names:
        if name == "raw":
            encoders[name] = lambda lonlat: torch.as_tensor(lonlat, dtype=torch.float32)
        elif name == "geoclip":
            encoders["GeoCLIP"] = _module_embedder(geoclip.load_geoclip(device=device), device)
        elif name in SPATIAL_ENCODERS:
            encoders[f"{name} (untrained)"] = _module_embedder(untrained_encoder(name, flags, seed), "cpu")
        else:
            raise ValueError(f"--encoders: unknown encoder {name!r}; choose raw, geoclip or one of "
                             f"{', '.join(SPATIAL_ENCODERS)} (checkpoints: --checkpoint NAME=PATH)")
    for label, path in list(checkpoints) + demo:
        loaded = load_checkpoint_encoder(path, device)
        encoders[label] = loaded if not isinstance(loaded, torch.nn.Module) else _module_embedder(loaded, device)
    return encoders


def embed(encoder, lonlat):
    """(N, D) float32 numpy embeddings of an encoder of `build_encoders`; ValueError if any is not finite."""
    out = np.asarray(torch.as_tensor(encoder(lonlat)).detach().cpu(), dtype=np.float32)
    if not np.isfinite(out).all():
        raise ValueError("the encoder gives NaN or infinite embeddings; its weights or flags are broken")
    return out


# ----------------------------------------------------------------------------------------------------------------
# probes and scores

def make_probe(probe, kind, seed=0):
    """A scikit-learn estimator: `probe` (linear, mlp, knn) for `kind` (class, value), after StandardScaler."""
    if probe not in PROBES:
        raise ValueError(f"--probes: unknown probe {probe!r}; choose from {', '.join(PROBES)}")
    classes = kind == "class"
    if probe == "linear":
        model = (LogisticRegression(tol=1e-3, max_iter=1000) if classes
                 else RidgeCV(alphas=np.logspace(-2, 4, 13), gcv_mode="svd"))
    elif probe == "mlp":
        settings = dict(hidden_layer_sizes=(256,), max_iter=300, early_stopping=True, random_state=seed)
        model = MLPClassifier(**settings) if classes else MLPRegressor(**settings)
    else:
        model = KNeighborsClassifier(KNN_NEIGHBOURS) if classes else KNeighborsRegressor(KNN_NEIGHBOURS)
    pipeline = make_pipeline(StandardScaler(), model)
    return pipeline if classes else TransformedTargetRegressor(pipeline, transformer=StandardScaler())


def score(kind, truth, predicted):
    """{metric: value}: accuracy and macro-F1 (in %) for classes, R² and MAE for values."""
    if kind == "class":
        return {"accuracy": 100 * accuracy_score(truth, predicted),
                "macro_f1": 100 * f1_score(truth, predicted, average="macro")}
    return {"r2": r2_score(truth, predicted), "mae": mean_absolute_error(truth, predicted)}


def check_fold(task, method, fold, train, probes, buffer_km):
    """ValueError naming the task, split and fold where the training part cannot fit `probes`."""
    where = f"task {task.name}, fold {fold} of the {method} split"
    fix = {"random": "give more rows or fewer --folds",
           "spatial_block": "give a smaller --block_deg, fewer --folds or more rows",
           "buffered": "give a smaller --buffer_km or --block_deg, or fewer --folds"}[method]
    if len(train) == 0:
        raise ValueError(f"{where}: --buffer_km {buffer_km:g} leaves no training points; {fix}")
    if task.kind == "class" and len(np.unique(task.target[train])) < 2:
        raise ValueError(f"{where}: the training points hold one class only "
                         f"({task.class_names[task.target[train][0]]!r}), so no probe can be fitted; {fix}")
    if "knn" in probes and len(train) < KNN_NEIGHBOURS:
        raise ValueError(f"{where}: --probes knn takes the {KNN_NEIGHBOURS} nearest training points, but there "
                         f"are {len(train)}; {fix}, or leave knn out of --probes")


def evaluate_task(task, features, split_methods, probes, folds=DEFAULT_FOLDS, seed=0,
                  block_deg=spatial_splits.DEFAULT_BLOCK_DEG, buffer_km=DEFAULT_BUFFER_KM):
    """[{split, probe, fold, n_train, n_test, metric: value}] for one task's (N, D) `features`; ValueError naming
    the task, split, fold and probe where a probe cannot be fitted."""
    features = features.astype(np.float64)  # float32 standardising overflows on tiny spreads (untrained rbf)
    rows = []
    for method in split_methods:
        try:
            splits = spatial_splits.fold_indices(task.lonlat, method, folds, seed, block_deg, buffer_km)
        except ValueError as err:
            raise ValueError(f"task {task.name}: {err}") from None
        for fold, (train, test) in enumerate(splits):
            check_fold(task, method, fold, train, probes, buffer_km)
            for probe in probes:
                try:
                    model = make_probe(probe, task.kind, seed).fit(features[train], task.target[train])
                except ValueError as err:  # e.g. the mlp's stratified early-stopping split of rare classes
                    raise ValueError(f"task {task.name}, fold {fold} of the {method} split, probe {probe}: "
                                     f"scikit-learn cannot fit it ({err}); give more rows or fewer --folds"
                                     + (", raise --min_class_count" if task.kind == "class" else "")
                                     + f" or leave {probe} out of --probes") from None
                rows.append({"split": method, "probe": probe, "fold": fold, "n_train": len(train),
                             "n_test": len(test), **score(task.kind, task.target[test], model.predict(features[test]))})
    return rows


def evaluate(encoders, tasks, split_methods=DEFAULT_SPLITS, probes=PROBES, folds=DEFAULT_FOLDS, seed=0,
             block_deg=spatial_splits.DEFAULT_BLOCK_DEG, buffer_km=DEFAULT_BUFFER_KM):
    """Long DataFrame of every fold's scores: columns encoder, task, kind, split, probe, fold, n_train, n_test and
    the task kind's METRICS. `encoders`: {label: embed function} (`build_encoders`); `tasks`: list of Task."""
    frames = []
    for task in tasks:
        for label, encoder in encoders.items():
            start = time.monotonic()
            features = embed(encoder, task.lonlat)
            # small matrices: a second BLAS thread only contends (10x slower under load); the probes' iterations are
            # capped, so an unconverged fit is part of the probe, not a failure
            with threadpool_limits(1), warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                rows = evaluate_task(task, features, split_methods, probes, folds, seed, block_deg, buffer_km)
            frames.append(pd.DataFrame(rows).assign(encoder=label, task=task.name, kind=task.kind))
            logger.info("%s × %s: %d fits in %.0f s", task.name, label, len(rows), time.monotonic() - start)
    columns = ["encoder", "task", "kind", "split", "probe", "fold", "n_train", "n_test"]
    frame = pd.concat(frames, ignore_index=True)
    return frame[columns + [m for m in ALL_METRICS if m in frame]]


def summarise(scores):
    """Mean and std over the folds: one row per encoder, task, split, probe and metric."""
    metrics = [m for m in ALL_METRICS if m in scores]
    long = scores.melt(id_vars=["encoder", "task", "kind", "split", "probe", "fold"], value_vars=metrics,
                       var_name="metric").dropna(subset=["value"])
    keys = ["encoder", "task", "kind", "split", "probe", "metric"]
    table = long.groupby(keys, sort=False)["value"].agg(["mean", "std", "count"]).reset_index()
    return table.rename(columns={"count": "folds"})


def to_markdown(summary, probe):
    """Markdown: rows = encoders, columns = task × split of `probe`, cells = mean ± std of accuracy (classes, %)
    or R² (values)."""
    main = summary[(summary["probe"] == probe) & summary["metric"].isin(["accuracy", "r2"])]
    cells = main.assign(cell=[f"{m:.1f} ± {s:.1f}" if metric == "accuracy" else f"{m:.2f} ± {s:.2f}"
                              for m, s, metric in zip(main["mean"], main["std"].fillna(0), main["metric"])])
    wide = cells.pivot_table(index="encoder", columns=["task", "split"], values="cell", aggfunc="first", sort=False)
    header = ["encoder"] + [f"{task} {'acc.' if kind == 'class' else 'R²'} ({split})"
                            for (task, split), kind in zip(wide.columns, _kinds(main, wide.columns))]
    lines = [f"Probe: {probe}", "", "| " + " | ".join(header) + " |",
             "|---|" + "---:|" * len(wide.columns)]
    lines += ["| " + " | ".join([encoder] + [str(v) for v in row]) + " |" for encoder, row in wide.iterrows()]
    return "\n".join(lines)


def _kinds(main, columns):
    kinds = dict(zip(main["task"], main["kind"]))
    return [kinds[task] for task, _ in columns]


def write_outputs(summary, out_dir, description):
    """`downstream.md` (one table per probe, after `description`) and `downstream.csv` (the summary) in
    `out_dir`; returns their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    markdown = "\n\n".join([description] + [to_markdown(summary, probe) for probe in summary["probe"].unique()])
    paths = tuple(out_dir / name for name in OUTPUT_NAMES)
    atomic_write(paths[0], lambda handle: handle.write((markdown + "\n").encode()))
    atomic_write(paths[1], lambda handle: handle.write(summary.to_csv(index=False, float_format="%.4f").encode()))
    return paths


# ----------------------------------------------------------------------------------------------------------------
# the command

def _checkpoint_spec(text):
    label, sep, path = text.partition("=")
    if not sep or not label or not path:
        raise argparse.ArgumentTypeError(f"{text!r}: give NAME=PATH, e.g. mine=models/run.pth.tar")
    return label, path


def make_parser():
    p = argparse.ArgumentParser(description="Downstream evaluation of frozen location encoders (probes on real "
                                            "offline tasks, random and spatially blocked splits). Flags after -- "
                                            "build the untrained encoders (train_unsuper.py flags).",
                                allow_abbrev=False, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add = p.add_argument
    add("--encoders", nargs="*", default=list(DEFAULT_ENCODERS),
        help="raw, geoclip, or a --spa_enc_type name (its untrained position encoding)")
    add("--checkpoint", type=_checkpoint_spec, action="append", default=[], metavar="NAME=PATH",
        help="a trained encoder: CSP / original / TorchSpatial checkpoint, SatCLIP checkpoint or GeoCLIP weights")
    add("--demo_dir", type=Path, default=None, help="the demo's --out_dir: adds its three encoders")
    add("--tasks", nargs="*", default=list(downstream_tasks.TASKS), help=", ".join(downstream_tasks.TASKS))
    add("--table", type=Path, default=None, help="your own task: CSV or Parquet with lon, lat, target")
    add("--target_kind", default="auto", help="--table's target: class, value or auto")
    add("--split_methods", nargs="+", default=list(DEFAULT_SPLITS), help=", ".join(spatial_splits.SPLIT_METHODS))
    add("--block_deg", type=float, default=spatial_splits.DEFAULT_BLOCK_DEG, help="spatial block size (degrees)")
    add("--buffer_km", type=float, default=DEFAULT_BUFFER_KM,
        help="buffered: training points within this distance of a test point are left out")
    add("--folds", type=int, default=DEFAULT_FOLDS, help="folds of each split")
    add("--probes", nargs="+", default=list(PROBES), help=", ".join(PROBES))
    add("--n_points", type=int, default=downstream_tasks.DEFAULT_POINTS, help="points drawn per task")
    add("--min_class_count", type=int, default=downstream_tasks.MIN_CLASS_COUNT,
        help="classes with fewer points are dropped")
    add("--seed", type=int, default=0, help="seed of the points, folds, untrained encoders and MLPs")
    add("--device", default="cpu", help="torch device of the encoders")
    add("--out_dir", type=Path, default=DEFAULT_OUT_DIR,
        help="folder of downstream.md and downstream.csv (the default is in the checkout, ignored by git)")
    add("--overwrite", action="store_true", help="replace downstream.md and downstream.csv of an earlier run")
    return p


def check_args(args):
    """ValueError for option values that no run could use, before any data is read."""
    for values, known, flag in ((args.split_methods, spatial_splits.SPLIT_METHODS, "--split_methods"),
                                (args.probes, PROBES, "--probes"), (args.tasks, downstream_tasks.TASKS, "--tasks")):
        unknown = [v for v in values if v not in known]
        if unknown:
            raise ValueError(f"{flag}: unknown {', '.join(map(repr, unknown))}; choose from {', '.join(known)}")
    if not args.tasks and args.table is None:
        raise ValueError("no task: give --tasks or --table")
    if not args.encoders and not args.checkpoint and args.demo_dir is None:
        raise ValueError("no encoder: give --encoders, --checkpoint or --demo_dir")
    if args.folds < 2:
        raise ValueError(f"--folds must be at least 2, got {args.folds}")
    spatial_splits.check_block_deg(args.block_deg)
    if "buffered" in args.split_methods and not args.buffer_km > 0:
        raise ValueError(f"--split_methods buffered needs --buffer_km > 0, got {args.buffer_km}")
    if args.min_class_count < 1:
        raise ValueError(f"--min_class_count must be at least 1 (1 keeps every class), got {args.min_class_count}")
    if not 0 <= args.seed < SEED_LIMIT:
        raise ValueError(f"--seed must be between 0 and {SEED_LIMIT - 1} (scikit-learn's random_state), "
                         f"got {args.seed}")
    check_out_dir(args.out_dir, args.overwrite)


def check_out_dir(out_dir, overwrite):
    """ValueError for an --out_dir that is a file or holds an earlier run's outputs (unless `overwrite`);
    PermissionError where the folder cannot be made or written."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--out_dir {out_dir} is a file; give a folder")
    earlier = [name for name in OUTPUT_NAMES if (out_dir / name).exists()]
    if earlier and not overwrite:
        raise ValueError(f"--out_dir {out_dir} holds {' and '.join(earlier)} of an earlier run, which this run "
                         f"would replace; give another --out_dir or add --overwrite")
    existing = next(folder for folder in [out_dir, *out_dir.absolute().parents] if folder.exists())
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(existing))


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    split = argv.index("--") if "--" in argv else len(argv)
    args = make_parser().parse_args(argv[:split])
    flags = argv[split + 1:]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s - %(message)s")
    check_args(args)
    start = time.monotonic()
    tasks = [downstream_tasks.build_task(name, args.n_points, args.seed, args.min_class_count) for name in args.tasks]
    if args.table is not None:
        tasks.append(downstream_tasks.read_user_task(args.table, args.target_kind, args.min_class_count))
    encoders = build_encoders(args.encoders, args.checkpoint, args.demo_dir, flags, args.seed, args.device)
    scores = evaluate(encoders, tasks, args.split_methods, args.probes, args.folds, args.seed, args.block_deg,
                      args.buffer_km)
    summary = summarise(scores)
    description = (f"Downstream probes of frozen location encoders: {len(tasks)} tasks "
                   f"({', '.join(f'{t.name} {len(t.target)} points' for t in tasks)}), {args.folds} folds, splits "
                   f"{', '.join(args.split_methods)} (--block_deg {args.block_deg:g}"
                   + (f", --buffer_km {args.buffer_km:g}" if "buffered" in args.split_methods else "")
                   + f"), seed {args.seed}; cells: mean ± std over the folds; {time.monotonic() - start:.0f} s.")
    paths = write_outputs(summary, args.out_dir, description)
    print("\n\n".join([description] + [to_markdown(summary, probe) for probe in args.probes]))
    print(f"\nWrote {paths[0]} and {paths[1]}")
    return summary


if __name__ == "__main__":
    run_command(main, output_flag="--out_dir")
