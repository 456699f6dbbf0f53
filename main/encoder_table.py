"""The encoder comparison: every location encoder through Sup. Only and CSP-MC-BLD, beside TorchSpatial's
Table 1 (docs/tables.md).

    python tables.py encoders --dataset fmow                                   # all encoders, 5 % and 100 %
    python tables.py encoders --dataset fmow --encoders sphere xyz --ratios 0.05 --seeds 0 1 2
    python tables.py encoders --dataset custom --ratios 0.05 -- --data_table obs.csv --features feats.npy
"""
import argparse
import logging
import os
import shlex
from pathlib import Path

import numpy as np
import pandas as pd

from . import own_data
from . import table_runs
from . import train_unsuper
from .arguments import default_params
from .results import read_results

logger = logging.getLogger(__name__)

TORCHSPATIAL_RESULTS = Path(__file__).with_name("torchspatial_results.csv")
PUBLISHED = "TorchSpatial 100%"  # the column of TorchSpatial's number
# The sphere family reads angles in radians: its radii are radians-scale. 0.0017 rad ~ 0.1 degrees and 1 rad (one
# cycle around the sphere) span the same scales as the grid encoders' 0.1 to 360 degrees; NeRF's fixed schedule
# pi 2^s reaches that finest scale at F = 8 (pi 2^7 ~ 400 per unit ~ 0.14 degrees).
SPHERE_RADII = ["--max_radius", "1", "--min_radius", "0.0017"]
ENCODERS = {  # key: (name in the papers, flags)
    "geo_net": ("wrap", ["--spa_enc_type", "geo_net"]),
    "wrap_ffn": ("wrap + ffn", ["--spa_enc_type", "wrap_ffn"]),
    "tile_ffn": ("tile", ["--spa_enc_type", "tile_ffn", "--min_radius", "2"]),
    "rbf": ("rbf", ["--spa_enc_type", "rbf", "--rbf_kernal_size", "2"]),
    "rff": ("rff", ["--spa_enc_type", "rff", "--rbf_kernal_size", "2"]),
    "gridcell": ("Space2Vec-grid", ["--spa_enc_type", "gridcell"]),
    "theory": ("Space2Vec-theory", ["--spa_enc_type", "theory"]),
    "xyz": ("xyz", ["--spa_enc_type", "xyz"]),
    "nerf": ("NeRF", ["--spa_enc_type", "nerf", "--frequency_num", "8"]),
    "sphere": ("Sphere2Vec-sphereC", ["--spa_enc_type", "sphere"] + SPHERE_RADII),
    "spheregrid": ("Sphere2Vec-sphereC+", ["--spa_enc_type", "spheregrid"] + SPHERE_RADII),
    "spheremixscale": ("Sphere2Vec-sphereM", ["--spa_enc_type", "spheremixscale"] + SPHERE_RADII),
    "spheregridmixscale": ("Sphere2Vec-sphereM+", ["--spa_enc_type", "spheregridmixscale"] + SPHERE_RADII),
    "dft": ("Sphere2Vec-dfs", ["--spa_enc_type", "dft"] + SPHERE_RADII),
    "spherical_harmonics": ("SH + ffn", ["--spa_enc_type", "spherical_harmonics"]),
    "spherical_harmonics_siren": ("Siren (SH)", ["--spa_enc_type", "spherical_harmonics", "--spa_enc_net", "siren"]),
}
METHODS = {"sup": ("Sup. Only", ["--unsuper_loss", "none"]),
           "mc_bld": ("CSP-MC-BLD", ["--unsuper_loss", "contsoftmax"])}
DEFAULT_RATIOS = (0.05, 1.0)
DATASETS = ("fmow", "inat_2018", own_data.DATASET)
# the dataset whose preset flag values (table_runs.PRESETS) a dataset's runs take: your own data takes fMoW's
PRESET_DATASETS = {own_data.DATASET: "fmow"}
OWN_FLAGS = table_runs.OWN_FLAGS + ("--seed",)


def run_argv(dataset, preset, encoder, method, ratio, seed, model_dir, device, overrides):
    image = ["--cnn_pred_type", "fewshot" if ratio < 1 else "full"]
    if method != "sup":
        image += ["--load_cnn_features_train", "T"]
    folder = os.path.join(str(model_dir), f"seed{seed}", "")
    return (["--dataset", dataset, "--model_dir", folder, "--device", device]
            + table_runs.COMMON + table_runs.PRESETS[(preset, preset_dataset(dataset))] + ENCODERS[encoder][1]
            + METHODS[method][1] + image + ["--train_sample_ratio", f"{ratio:g}", "--seed", str(seed)]
            + list(overrides))


def preset_dataset(dataset):
    """The dataset whose preset values the runs on `dataset` take (your own data: fMoW's)."""
    return PRESET_DATASETS.get(dataset, dataset)


def plan(dataset, preset, encoders, methods, ratios, seeds, model_dir, device="auto", overrides=()):
    """[table_runs.Run] of every cell, `row` = (encoder, method, seed)."""
    runs = []
    for encoder in encoders:
        for method in methods:
            for ratio in ratios:
                for seed in seeds:
                    argv = run_argv(dataset, preset, encoder, method, ratio, seed, model_dir, device, overrides)
                    path, params = table_runs.results_path(argv)
                    runs.append(table_runs.Run((encoder, method, seed), round(ratio, 3), argv, params, path,
                                           read_results(path)))
    if dataset == own_data.DATASET and runs:
        own_data.check_input_files([run.params for run in runs])
        switched = own_data.loader_flags(runs[0].params)  # the same table and flags in every run
        for run in runs:
            run.params.update(switched)
    return runs


def collect(runs, dataset, collect_only=False):
    """Run the unfinished `runs` (unless `collect_only`); sets `run.results` (None if unfinished)."""
    to_run = [] if collect_only else [run for run in runs if not table_runs.is_finished(run.results,
                                                                                    run.params["num_epochs"])]
    fix = table_runs.COLLECT_FIX if collect_only else table_runs.RUN_FIX
    mismatched = table_runs.flag_mismatches(runs, to_run)
    if mismatched:
        raise ValueError(f"{len(mismatched)} file(s) of this table's runs were made with other flags; they are "
                         f"neither used nor overwritten:\n{table_runs.mismatch_lines(mismatched)}\nFix: {fix}.")
    if collect_only:
        for seed in sorted({run.row[2] for run in runs}):
            seed_runs = [run for run in runs if run.row[2] == seed]
            model_dir = seed_runs[0].argv[seed_runs[0].argv.index("--model_dir") + 1]
            table_runs.check_other_results(seed_runs, model_dir, fix)
    if dataset != own_data.DATASET:  # custom: `plan` checked its files
        table_runs.check_input_files(dataset, to_run)
    for number, run in enumerate(to_run, 1):
        encoder, method, seed = run.row
        logger.info("Run %d of %d: %s, %s at %g %%, seed %d: %s", number, len(to_run), ENCODERS[encoder][0],
                    METHODS[method][0], run.ratio * 100, seed, run.path)
        train_unsuper.main(run.argv)
        run.results = read_results(run.path)
    for run in runs:
        if not table_runs.is_finished(run.results, run.params["num_epochs"]):
            run.results = None
    return runs


def torchspatial_results(dataset):
    """{encoder key: top-1} of TorchSpatial's Table 1 for `dataset`, plus 'no_prior'; {} if none."""
    frame = pd.read_csv(TORCHSPATIAL_RESULTS, keep_default_na=False)
    frame = frame[(frame["dataset"] == dataset) & frame["meta_type"].isin(["", "ebird_meta"])]
    return dict(zip(frame["encoder"], frame["top1"]))


def _mean_std(values):
    values = [value for value in values if value is not None]
    if not values:
        return None, None, 0
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else None, len(values)


def assemble(runs, dataset, encoders, methods, ratios):
    """The table as a DataFrame: per encoder, ratio and method our mean top-1, std, seeds, and TorchSpatial's."""
    published = torchspatial_results(dataset)
    by_cell = {}
    for run in runs:
        encoder, method, _ = run.row
        top1 = table_runs.final_top1(run.results, "location_prior") if run.results else None
        by_cell.setdefault((encoder, method, run.ratio), []).append(top1)
    lines = []
    image_line = {"encoder": "no_prior", "model": "Img. Only (no location prior)"}
    for ratio in sorted({round(ratio, 3) for ratio in ratios}):
        image_tops = {}
        for run in runs:
            if run.ratio == ratio and run.results:
                image_tops[run.row[2]] = table_runs.final_top1(run.results, "no_prior")
        mean, std, count = _mean_std(list(image_tops.values()))
        for method in methods:
            image_line.update(_cells(method, ratio, mean, std, count))
    if published:
        image_line[PUBLISHED] = published.get("no_prior")
    lines.append(image_line)
    for encoder in encoders:
        line = {"encoder": encoder, "model": ENCODERS[encoder][0]}
        for ratio in sorted({round(ratio, 3) for ratio in ratios}):
            for method in methods:
                line.update(_cells(method, ratio, *_mean_std(by_cell.get((encoder, method, ratio), []))))
        if published:
            line[PUBLISHED] = published.get(encoder)
        lines.append(line)
    return pd.DataFrame(lines)


def _cells(method, ratio, mean, std, count):
    label = f"{METHODS[method][0]} {ratio * 100:g}%"
    return {f"{label} mean": mean, f"{label} std": std, f"{label} seeds": count}


def to_markdown(frame, dataset, preset, seeds, overrides=()):
    """The table as markdown, "mean ± std (n)" per cell, TorchSpatial's number last."""
    columns = [column[:-len(" mean")] for column in frame.columns if column.endswith(" mean")]
    published = PUBLISHED in frame.columns
    header = (["Encoder", "Name in the papers"] + [f"{column} (ours)" for column in columns]
              + ([PUBLISHED] if published else []))
    given = f"; given after `--`: `{shlex.join(overrides)}`" if overrides else ""
    values = table_runs.preset_description(preset, preset_dataset(dataset), overrides)
    if preset_dataset(dataset) != dataset:
        values = f"{preset_dataset(dataset)}'s values: {values}"
    lines = [f"### Location encoders on {dataset}: Top-1 (%)"
             + (", ours beside TorchSpatial's Table 1" if published else ""), "",
             f"Our numbers: preset `{preset}` ({values}), the "
             f"encoders' own flags (`encoder_table.ENCODERS`){given}; mean ± standard deviation over seeds "
             f"{', '.join(map(str, seeds))} (number of finished seeds in brackets).", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in frame.to_dict("records"):
        cells = [f"`{row['encoder']}`", row["model"]]
        for column in columns:
            mean, std, count = row[f"{column} mean"], row[f"{column} std"], row[f"{column} seeds"]
            if mean is None or pd.isna(mean):
                cells.append(table_runs.MISSING)
            else:
                cells.append(f"{mean:.2f}" + ("" if std is None or pd.isna(std) else f" ± {std:.2f}")
                             + f" ({count})")
        if published:
            number = row[PUBLISHED]
            cells.append(table_runs.MISSING if number is None or pd.isna(number) else f"{number:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    notes = ["TorchSpatial: fully supervised encoders (no pre-training) at 100 % labels, one run each, its own "
             "image model and hyper-parameters; comparable in ordering, not in value, with Sup. Only 100 %."]
    notes = (notes if published else []) + [
        "Img. Only = the \"No prior\" block of the runs at that ratio (the same in both method columns).",
        f"{table_runs.MISSING} = no finished run with these flags (or no published number)."]
    return "\n".join(lines + [""] + [f"* {note}" for note in notes]) + "\n"


def write_table(frame, dataset, preset, seeds, out_dir, overrides=()):
    """Write `encoders_{dataset}_{preset}.md` and `.csv`; returns (md path, csv path, markdown)."""
    markdown = to_markdown(frame, dataset, preset, seeds, overrides)
    return (*table_runs.write_markdown_and_csv(out_dir, f"encoders_{dataset}_{preset}", markdown, frame), markdown)


def make_parser():
    p = argparse.ArgumentParser(prog="tables.py encoders",
                                description="Run or collect every location encoder through Sup. Only and "
                                            "CSP-MC-BLD and write the table beside TorchSpatial's Table 1 (flags "
                                            "after the table's own go to every run)", allow_abbrev=False)
    p.add_argument("--dataset", required=True, choices=DATASETS,
                   help="fmow, inat_2018, or custom = your own data: give its --data_table, --features (and "
                        "--label_set ...) after --; its runs take the fmow preset's flag values and the table has "
                        "no TorchSpatial column")
    p.add_argument("--encoders", nargs="+", default=list(ENCODERS), choices=list(ENCODERS), metavar="ENCODER",
                   help=f"encoders to run or collect (default all): {', '.join(ENCODERS)}")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS),
                   help="sup = Sup. Only, mc_bld = CSP-MC-BLD (default both)")
    p.add_argument("--ratios", type=float, nargs="+", default=list(DEFAULT_RATIOS), help="label ratios in (0, 1]")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds; the table shows their mean")
    p.add_argument("--preset", default="released", choices=table_runs.PRESET_NAMES)
    p.add_argument("--data_dir", default=None,
                   help="folder holding the dataset folders (default CSP_DATA_DIR); not for --dataset custom")
    p.add_argument("--model_dir", default=None,
                   help="folder of the runs (default model_dir/tables/encoders_{dataset}/{preset}/ in the "
                        "repository, wherever the command starts)")
    p.add_argument("--out_dir", default=None, help="folder of the .md and .csv (default the model folder)")
    p.add_argument("--device", default="auto")
    p.add_argument("--collect_only", action="store_true", help="only read finished runs' results files")
    return p


def check_own_data_flags(args, overrides):
    """ValueError unless --dataset custom has --data_table after `--` and no --data_dir."""
    example = ("e.g. `tables.py encoders --dataset custom -- --data_table obs.csv --features feats.npy` "
               "(own_data.py)")
    if args.data_dir:
        raise ValueError(f"--data_dir {args.data_dir}: --dataset custom reads no dataset folder; give the data "
                         f"flags after --, {example}")
    if "--data_table" not in table_runs.flag_names(overrides):
        raise ValueError(f"--dataset custom needs --data_table (and --features) after --, {example}")


def main(argv=None):
    table_runs.log_to_console(logger)
    args, overrides = make_parser().parse_known_args(argv)
    overrides = [word for word in overrides if word != "--"]
    own = sorted(table_runs.flag_names(overrides) & set(OWN_FLAGS))
    if own:
        raise ValueError(f"{', '.join(own)}: set by the table itself; use its --ratios, --seeds, --dataset, "
                         f"--model_dir, --device")
    bad = [ratio for ratio in args.ratios if not 0 < ratio <= 1]
    if bad:
        raise ValueError(f"--ratios must be in (0, 1], got {bad}")
    table_runs.check_seeds(args.seeds)
    if args.dataset == own_data.DATASET:
        check_own_data_flags(args, overrides)
    if args.data_dir:
        os.environ["CSP_DATA_DIR"] = str(args.data_dir)
    model_dir = Path(args.model_dir or table_runs.DEFAULT_MODEL_ROOT / f"encoders_{args.dataset}" / args.preset)
    for encoder in args.encoders:
        for method in args.methods:
            default_params(run_argv(args.dataset, args.preset, encoder, method, args.ratios[0],
                                    args.seeds[0], model_dir, args.device, overrides))
    runs = plan(args.dataset, args.preset, args.encoders, args.methods, args.ratios, args.seeds, model_dir,
                args.device, overrides)
    collect(runs, args.dataset, args.collect_only)
    frame = assemble(runs, args.dataset, args.encoders, args.methods, args.ratios)
    md_path, csv_path, markdown = write_table(frame, args.dataset, args.preset, args.seeds,
                                              args.out_dir or model_dir, overrides)
    print(markdown)
    logger.info("Wrote %s and %s", md_path, csv_path)
    return frame
