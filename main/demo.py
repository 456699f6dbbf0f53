"""The demo: CSP on a small real dataset, offline, on a CPU (docs/demo.md).

    python main/demo.py                       # from the repository root (or: cd main && python demo.py)
    python main/demo.py --seed 1              # another seed
    python main/demo.py --readme_figures      # also overwrite the README's two maps in image/
    python main/demo.py -- --unsuper_lr 0.00005   # flags after -- go to both runs
    python main/demo.py -- --split_method spatial_block   # both runs on a split of whole 10-degree cells
"""
import argparse
import inspect
import json
import logging
import math
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

if not __package__:  # run as a script (`python demo.py`): its folder is imported as the package csp
    __package__ = __import__("as_package").PACKAGE
from . import demo_data
from . import land_mask
from . import plots
from . import train_unsuper
from .tables import final_top1
from .arguments import default_params, run_command

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
FMOW_SCRIPT = ROOT / "run-fmow-contsoftmax.sh"
DEFAULT_OUT_DIR = ROOT / "demo"
README_IMAGE_DIR = ROOT / "image"
README_FIGURES = {"class_map.png": "demo_class_map.png", "clusters.png": "demo_clusters.png"}
# the class whose map is drawn (by name, as its id depends on the build); the first class where it is missing
MAP_CLASS = "evergreen_broadleaf_forests"
# The demo's changes to the run script's flags, each with its reason; --model_dir and --seed are added per run.
DEMO_OVERRIDES = (
    (["--unsuper_lr", "0.001"],
     "the paper's pre-training learning rate for fMoW (appendix A.4), not the script's 5e-5: with the class-balanced "
     "sampler (at most 100 images per class and epoch) 300 epochs are about 2,100 steps on fMoW but 600 here"),
    (["--load_unsuper_model", "F", "--load_super_model", "F"],
     "train from scratch every time (the script resumes from the checkpoints in --model_dir)"),
)
# flags the demo sets itself (its own options, or what makes a row the row it is)
OWN_FLAGS = ("--dataset", "--model_dir", "--seed", "--device", "--unsuper_loss", "--spa_enc_type",
             "--train_sample_ratio")
CONSOLE_LOGGERS = (__name__,) + tuple(f"{__package__}.{module}" for module in (
    "demo_data", "extract_features", "plots", "land_mask", "progress"))
# wall seconds of each step on a quiet 2-core CPU (AMD EPYC, torch CPU build; measured for the README), and the
# epochs the runs had there: the estimates printed before each step scale these by the epochs and the machine's load
QUIET_SECONDS = {"dataset": 90.0, "CSP-MC-BLD": 190.0, "Sup. Only (grid)": 20.0, "figures": 8.0}
QUIET_EPOCHS = {"CSP-MC-BLD": 600, "Sup. Only (grid)": 300}


def _log_to_console():
    """The demo's messages on stderr, not through the root logger."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s - %(message)s"))
    for name in CONSOLE_LOGGERS:
        log = logging.getLogger(name)
        if not log.handlers:
            log.addHandler(handler)
            log.setLevel(logging.INFO)
            log.propagate = False


def estimate(quiet_seconds, cores=None, load=None):
    """"about A-B s (…)": `quiet_seconds` scaled by this machine's load and cores."""
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if load is None:
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    factor = max(1.0, (load + 1.0) / cores) * max(1.0, 2.0 / cores)
    low = quiet_seconds * factor
    high = low * (6.0 if factor > 1 else 1.5)
    unit, scale = ("s", 1.0) if high < 120 else ("min", 60.0)
    plural = "s" if cores != 1 else ""
    return (f"about {max(1, math.floor(low / scale))}-{math.ceil(high / scale)} {unit} ({quiet_seconds:.0f} s on a "
            f"quiet 2-core CPU; this machine: {cores} core{plural}, load {load:.1f}"
            f"{', so slower' if factor > 1 else ''})")


# ----------------------------------------------------------------------------------------------------------------
# the dataset

def dataset_is_built(data_dir, build_args):
    """True when `data_dir` holds a finished build made with the recipe of `build_args`."""
    try:
        with open(Path(data_dir) / "demo_manifest.json") as handle:
            recipe = json.load(handle)["recipe"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    defaults = {name: parameter.default
                for name, parameter in inspect.signature(demo_data.build_demo_dataset).parameters.items()}
    wanted = {**defaults, **build_args, "feature_recipe_version": demo_data.FEATURE_RECIPE_VERSION}
    return all(key in wanted and wanted[key] == value for key, value in recipe.items())


def ensure_dataset(data_dir, build_args=None):
    build_args = dict(build_args or {})
    if dataset_is_built(data_dir, build_args):
        logger.info("Demo dataset: %s (already built)", data_dir)
        return
    logger.info("Building the demo dataset in %s: %s; its image features are kept for later builds", data_dir,
                estimate(QUIET_SECONDS["dataset"]))
    demo_data.build_demo_dataset(data_dir, **build_args)


# ----------------------------------------------------------------------------------------------------------------
# the runs

def demo_overrides():
    return [word for flags, _ in DEMO_OVERRIDES for word in flags]


def data_flags(data_dir):
    data_dir = Path(data_dir)
    return ["--dataset", "custom", "--data_table", str(data_dir / demo_data.TABLE),
            "--features", str(data_dir / demo_data.FEATURES), "--label_set", str(data_dir / demo_data.LABELS)]


def run_argvs(model_dir, seed, device=None, extra_flags=(), data_dir=DEFAULT_OUT_DIR / "data"):
    """{row: train_unsuper.py flags}: the run script's, the demo's, the data's, then `extra_flags`."""
    own = sorted({word.split("=")[0] for word in extra_flags if word.split("=")[0] in OWN_FLAGS})
    if own:
        raise ValueError(f"{', '.join(own)}: set by the demo itself (use its --out_dir, --seed, --device)")
    argv = (train_unsuper.script_argv(FMOW_SCRIPT) + demo_overrides() + data_flags(data_dir)
            + ["--model_dir", os.path.join(str(model_dir), ""), "--seed", str(seed)]
            + (["--device", device] if device else []) + list(extra_flags))
    return {"CSP-MC-BLD": argv, "Sup. Only (grid)": argv + ["--unsuper_loss", "none"]}


def write_unsplit_table(data_dir, model_dir):
    """The demo table without its `split` column, as `{model_dir}/observations.csv`; its path."""
    table = pd.read_csv(Path(data_dir) / demo_data.TABLE, dtype={"image": str, "label": str, "user": str})
    path = Path(model_dir) / demo_data.TABLE
    path.parent.mkdir(parents=True, exist_ok=True)
    table.drop(columns="split").to_csv(path, index=False)
    return path


# ----------------------------------------------------------------------------------------------------------------
# the table

def _final_block(results, method):
    return [block for block in results["evaluations"] if block["method"] == method and block["epoch"] is None][-1]


def summary_rows(csp, sup):
    """[(model, what predicts, Top-1 %, what is scored)] from the two runs' results."""
    rows = []
    for model, predicts, results, method in (
            ("Image only", "EfficientNet-Lite0 probe", csp, "no_prior"),
            ("Location only", "CSP-MC-BLD encoder, no image", csp, "location_only"),
            ("Sup. Only (grid)", "image × location prior", sup, "location_prior"),
            ("CSP-MC-BLD", "image × location prior", csp, "location_prior")):
        block = _final_block(results, method)
        scored = "val images with location" if method == "location_only" else "val images"
        rows.append((model, predicts, final_top1(results, method), f"{block['num_scored']} {scored}"))
    return rows


def format_report(rows, csp, overrides, extra_flags, files, seconds):
    """The text the demo prints."""
    params = csp["params"]
    num_labelled = len(np.load(csp["files"]["train_sample_idx_file"]))
    lines = [f"CSP demo: {params['num_classes']} land-cover classes, fine-tuning on "
             f"{params['train_sample_ratio']:.0%} of the labels ({num_labelled} images), seed {params['seed']}",
             f"Runs: the flags of {FMOW_SCRIPT.name}, then"]
    lines += [f"  {' '.join(flags)}: {reason}" for flags, reason in DEMO_OVERRIDES]
    lines.append(f"  {' '.join(overrides[len(demo_overrides()):len(overrides) - len(extra_flags)])}")
    if extra_flags:
        lines.append(f"  {' '.join(extra_flags)}: given after --, these win over the flags above")
    lines += ["Sup. Only (grid): the same flags and --unsuper_loss none (no pre-training)", "",
              "| model (5 % labels) | prediction | Top-1 (%) | scored |", "|---|---|---:|---|"]
    lines += [f"| {model} | {predicts} | {top1:.2f} | {scored} |" for model, predicts, top1, scored in rows]
    lines += ["", "Wrote:"] + [f"  {what}: {path}" for what, path in files]
    lines += ["", "Wall time: " + ", ".join(f"{step} {secs:.0f} s" for step, secs in seconds.items())
              + f" (total {sum(seconds.values()):.0f} s)"]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------------
# the demo

def _class_to_map(data_dir):
    classes = (Path(data_dir) / demo_data.LABELS).read_text().split()
    name = MAP_CLASS if MAP_CLASS in classes else classes[0]
    return classes.index(name), name


def draw_figures(csp, data_dir, out_dir, device="auto", cluster_step=0.5, max_cluster_points=5000):
    """The CSP-MC-BLD class map and embedding clusters as PNGs in `out_dir`; returns [(what, path)]."""
    mask, source = land_mask.load_land_mask()
    pretrained = plots.as_model(csp["files"]["unsuper_model_file_name"], device)
    finetuned = plots.as_model(csp["files"]["model_file_name"], device)
    class_id, name = _class_to_map(data_dir)
    class_map, clusters = Path(out_dir) / "class_map.png", Path(out_dir) / "clusters.png"
    plots.plot_class_map(finetuned, class_id, class_map, mask, class_name=name.replace("_", " "),
                         model_name="the demo's CSP-MC-BLD (fMoW script flags, fine-tuned on 5 % of the labels)")
    plots.plot_cluster_maps([("pre-trained", pretrained), ("fine-tuned", finetuned)], clusters, mask,
                            step=cluster_step, max_points=max_cluster_points)
    return [(f"predicted distribution of class {class_id} ({name}), land mask: {source}", class_map),
            ("clusters of the location embeddings, pre-trained | fine-tuned", clusters)]


def run_demo(out_dir=DEFAULT_OUT_DIR, seed=0, device=None, extra_flags=(), readme_dir=None, build_args=None,
             cluster_step=0.5, max_cluster_points=5000):
    """The whole demo into `out_dir`, figures also into `readme_dir`; returns {"rows", "report", "files",
    "results"}. With --split_method in `extra_flags` the runs draw their splits, in `runs/seed{seed}-{method}/`."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--out_dir {out_dir} is a file; give a folder (default {DEFAULT_OUT_DIR})")
    data_dir = out_dir / "data"
    model_dir = out_dir / "runs" / f"seed{seed}"
    argvs = run_argvs(model_dir, seed, device, extra_flags, data_dir)
    for argv in argvs.values():
        default_params(argv)
    given = any(word.split("=")[0] == "--split_method" for word in extra_flags)
    split_method = default_params(argvs["CSP-MC-BLD"])["split_method"] if given else None
    if split_method:
        model_dir = out_dir / "runs" / f"seed{seed}-{split_method}"
        argvs = run_argvs(model_dir, seed, device, extra_flags, data_dir)
    seconds = {}
    start = time.monotonic()
    ensure_dataset(data_dir, build_args)
    seconds["dataset"] = time.monotonic() - start
    if split_method:
        table = write_unsplit_table(data_dir, model_dir)
        logger.info("--split_method %s: the runs read %s (the table without its split column)", split_method, table)
        for argv in argvs.values():
            argv[argv.index("--data_table") + 1] = str(table)

    overrides = argvs["CSP-MC-BLD"][len(train_unsuper.script_argv(FMOW_SCRIPT)):]
    logger.info("Runs: the flags of %s, then %s (their log lines go to the .log files in %s)", FMOW_SCRIPT.name,
                " ".join(overrides), model_dir)
    results = {}
    for name, argv in argvs.items():
        start = time.monotonic()
        params = default_params(argv)
        epochs = params["num_epochs"] + (params["num_epochs_unsuper"] if params["unsuper_loss"] != "none" else 0)
        logger.info("%s: training and evaluating, %s", name,
                    estimate(QUIET_SECONDS[name] * epochs / QUIET_EPOCHS[name]))
        results[name] = train_unsuper.main(argv, console=False, progress=True)
        seconds[name] = time.monotonic() - start
    csp, sup = results["CSP-MC-BLD"], results["Sup. Only (grid)"]

    start = time.monotonic()
    logger.info("Drawing the maps: %s", estimate(QUIET_SECONDS["figures"]))
    files = draw_figures(csp, data_dir, model_dir if split_method else out_dir, device or "auto", cluster_step,
                         max_cluster_points)
    if readme_dir is not None:
        Path(readme_dir).mkdir(parents=True, exist_ok=True)
        for _, path in list(files):
            copy = Path(readme_dir) / README_FIGURES[path.name]
            shutil.copyfile(path, copy)
            files.append((f"README copy of {path.name}", copy))
    seconds["figures"] = time.monotonic() - start

    report_path = out_dir / (f"demo_results-{split_method}.md" if split_method else "demo_results.md")
    files = ([("dataset", data_dir), ("both runs (checkpoints, .log, .results.json, .ranks.npz)", model_dir)]
             + files + [("this report", report_path)])
    rows = summary_rows(csp, sup)
    report = format_report(rows, csp, overrides, list(extra_flags), files, seconds)
    report_path.write_text(report + "\n")
    return {"rows": rows, "report": report, "files": files, "results": results}


def make_parser():
    p = argparse.ArgumentParser(
        description="The CSP demo: build the demo dataset, run CSP-MC-BLD and Sup. Only (grid) with the fMoW run "
                    "script's flags, draw the maps, print the Top-1 table. Flags after -- go to both runs.",
        allow_abbrev=False, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out_dir", type=Path, default=DEFAULT_OUT_DIR,
                   help="the demo's folder: dataset, runs, figures, report (demo/ in the repository)")
    p.add_argument("--seed", type=int, default=0, help="--seed of both runs")
    p.add_argument("--device", default=None, help="--device of both runs (None: the script's auto)")
    p.add_argument("--readme_figures", action="store_true",
                   help=f"also copy the two maps into {README_IMAGE_DIR}, OVERWRITING the README's figures "
                        f"{' and '.join(README_FIGURES.values())} (files tracked by git)")
    return p


def main(argv=None):
    _log_to_console()
    argv = list(sys.argv[1:] if argv is None else argv)
    split = argv.index("--") if "--" in argv else len(argv)
    args = make_parser().parse_args(argv[:split])
    extra = argv[split + 1:]
    done = run_demo(args.out_dir, args.seed, args.device, extra, README_IMAGE_DIR if args.readme_figures else None)
    print(done["report"])
    return done


if __name__ == "__main__":
    run_command(main, output_flag="--out_dir")
