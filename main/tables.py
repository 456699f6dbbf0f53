"""The paper's tables: run (or collect) the rows and label ratios, then write them beside the published numbers.

    python tables.py comparison --dataset inat_2018    # Table 1 (iNat2018)
    python tables.py comparison --dataset fmow         # Table 5 (fMoW)
    python tables.py ablation --dataset inat_2018      # Table 2 (CSP-MC loss terms)
    python tables.py comparison --dataset fmow --seeds 0 1 2 3 4    # every cell 5 times: mean (spread)
    python tables.py encoders --dataset fmow           # every location encoder (encoder_table.py)

Each (row, ratio) is one `train_unsuper.py` run, started in this process with the flags of the chosen preset, the
row's flags, `--train_sample_ratio`, and any flags given after the table's own (they win, e.g.
`-- --num_epochs 2 --num_epochs_unsuper 1`). The table always has all the paper's rows and ratios (plus any other
`--ratios`), filled from the finished runs in the model folder; `--rows` and `--ratios` choose what is run, and with
`--collect_only` nothing runs and missing results show as "–". Pre-training does not depend on the ratio, so a CSP
row pre-trains once and its other ratios fine-tune the saved pre-trained checkpoint (`--load_unsuper_model T`).

A run's file names do not encode every flag (`--cnn_pred_type`, the epoch counts, `--seed`, ...), so a run is
recognised by the flags its results file (`….results.json` next to its log, written by the trainer) records in
`params`: they must equal the flags the table would run it with, all but `run_flags.NOT_RUN_FLAGS` (the device and
folder, logging, evaluation and snapshot frequencies, resuming, and the flags kept for compatibility only) and, for a
row without pre-training, `run_flags.PRETRAINING_FLAGS`. A results file with equal flags and a final evaluation after
all fine-tuning epochs is used and not run again; one with equal flags but unfinished is resumed. Before anything runs,
the table stops with an error that names the file and the differing flags when a results file of one of its cells
(also one it only collects), or a checkpoint that a run would resume from (a pre-trained one: all but
`FINETUNING_FLAGS`), was made with other flags; and when an image-prediction or -feature file that a run needs is
missing. `--collect_only` also stops, without writing the table, when no cell has a finished run with these flags
but the folder holds results of runs of the dataset with other flags.

Our number is the top-1 of the final image × location-prior evaluation ("location_prior"); "Img. Only" is the
top-1 of the "No prior" block of any finished run at that ratio. With `--seeds S1 S2 …` every cell is run once per
seed (`--seed S`, in the model folder's `seed{S}/`, so that each seed's runs resume and are collected apart) and
shows the mean over the seeds' finished runs with their spread in brackets, of the kind the paper gives beside it
(standard deviation, Tables 1 and 2; standard error, Table 5), and the number of runs where some are missing.
The image predictions are the few-shot classifier's at a ratio below 1 (`--cnn_pred_type fewshot`) and the fully
supervised one's at 1.

Presets (`--preset`), paper-results §1.9: `released` = the run scripts' values, for fMoW those of the released
checkpoint (SimCSE weight 0.1, temperatures 1/1/1, where the script says 1 and 20); `paper` = appendix A.4
(iNat: lr 5e-4, unsuper_lr 2e-4, r_min 0.01, temperatures 1; fMoW: unsuper_lr 1e-3, r_min 0.01, SimCSE weight 1;
both: negatives uniform on the sphere). Both use d = 256.
Outputs: `{out_dir}/table{N}_{dataset}_{preset}.md` and `.csv` (default out_dir = the model folder).
"""
import argparse
import logging
import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pandas as pd

if not __package__:  # run as a script (`python tables.py`): its folder is imported as the package csp
    __package__ = __import__("as_package").PACKAGE
from . import checkpoints
from . import datasets
from . import paths
from . import train_unsuper
from .arguments import FINETUNING_FLAGS, default_params, run_command
from .run_flags import describe, flag_differences
from .evaluation import overall_top1
from .results import output_file_names, read_results

logger = logging.getLogger(__name__)

PAPER_RESULTS = Path(__file__).with_name("paper_results.csv")
DEFAULT_MODEL_ROOT = paths.MAIN_DIR.parent / "model_dir" / "tables"
PAPER_RATIOS = (0.05, 0.1, 0.2, 1.0)
MISSING = "–"

ENCODER = ["--spa_enc_type", "gridcell"]
ROWS = {  # key: (paper name, flags of the row)
    "img_only": ("Img. Only", None),
    "sup_wrap": ("Sup. Only (wrap)", ["--spa_enc_type", "geo_net", "--unsuper_loss", "none"]),
    "sup_grid": ("Sup. Only (grid)", ENCODER + ["--unsuper_loss", "none"]),
    "mse": ("MSE", ENCODER + ["--unsuper_loss", "l2regress"]),
    "nce_bld": ("CSP-NCE-BLD", ENCODER + ["--unsuper_loss", "imgcontlosssimcse"]),
    "mc_bld": ("CSP-MC-BLD", ENCODER + ["--unsuper_loss", "contsoftmax"]),
    "mc_bd": ("CSP-MC-BD", ENCODER + ["--unsuper_loss", "contsoftmax", "--rand_sample_weight", "0"]),
    "mc_bl": ("CSP-MC-BL", ENCODER + ["--unsuper_loss", "contsoftmax", "--simcse_weight", "0"]),
    "mc_b": ("CSP-MC-B", ENCODER + ["--unsuper_loss", "contsoftmax", "--rand_sample_weight", "0",
                                    "--simcse_weight", "0"]),
}
TABLES = {  # (kind, dataset): (paper table number, title, row keys)
    ("comparison", "inat_2018"): (1, "iNat2018 val, Top-1 (%)",
                                  ["img_only", "sup_wrap", "sup_grid", "mse", "nce_bld", "mc_bld"]),
    ("comparison", "fmow"): (5, "fMoW val, Top-1 (%)",
                             ["img_only", "sup_wrap", "sup_grid", "mse", "nce_bld", "mc_bld"]),
    ("ablation", "inat_2018"): (2, "iNat2018 val, ablation of the CSP-MC loss terms, Top-1 (%)",
                                ["mc_bld", "mc_bd", "mc_bl", "mc_b"]),
    ("ablation", "fmow"): (2, "fMoW val, ablation of the CSP-MC loss terms, Top-1 (%) (the paper has iNat2018 only)",
                           ["mc_bld", "mc_bd", "mc_bl", "mc_b"]),
}
# the image model of our "Img. Only" row where the paper lists several
OUR_IMAGE_MODEL = {"inat_2018": "ImageNet InceptionV3", "fmow": "Geo-SSL"}

COMMON = ["--load_val_op", "T", "--inat2018_resolution", "pretrain", "--frequency_num", "32", "--max_radius", "360",
          "--num_hidden_layer", "1", "--hidden_dim", "512", "--num_filts", "256", "--dropout", "0.5",
          "--batch_size", "1024", "--num_neg_rand_loc", "1", "--rand_sample_weight", "1",
          "--unsuper_temp_negloc", "1", "--unsuper_temp_simcse", "1", "--eval_frequency", "5",
          "--train_sample_method", "stratified-fix", "--do_unsuper_train", "T", "--load_unsuper_model", "T",
          "--do_super_train", "T", "--load_super_model", "T"]
PRESETS = {  # (preset, dataset): flags
    ("released", "inat_2018"): ["--spa_f_act", "leakyrelu", "--min_radius", "0.1", "--lr", "0.001",
                                "--unsuper_lr", "0.0005", "--neg_rand_type", "sphericalold", "--simcse_weight", "1",
                                "--unsuper_temp_inbatch", "20", "--num_epochs_unsuper", "30", "--num_epochs", "200"],
    ("paper", "inat_2018"): ["--spa_f_act", "leakyrelu", "--min_radius", "0.01", "--lr", "0.0005",
                             "--unsuper_lr", "0.0002", "--neg_rand_type", "spherical", "--simcse_weight", "1",
                             "--unsuper_temp_inbatch", "1", "--num_epochs_unsuper", "30", "--num_epochs", "200"],
    ("released", "fmow"): ["--spa_f_act", "gelu", "--min_radius", "0.1", "--lr", "0.001", "--unsuper_lr", "0.00005",
                           "--neg_rand_type", "sphericalold", "--simcse_weight", "0.1", "--unsuper_temp_inbatch", "1",
                           "--num_epochs_unsuper", "300", "--num_epochs", "300"],
    ("paper", "fmow"): ["--spa_f_act", "gelu", "--min_radius", "0.01", "--lr", "0.001", "--unsuper_lr", "0.001",
                        "--neg_rand_type", "spherical", "--simcse_weight", "1", "--unsuper_temp_inbatch", "1",
                        "--num_epochs_unsuper", "300", "--num_epochs", "300"],
}
PRESET_NAMES = ("released", "paper")
OWN_FLAGS = ("--train_sample_ratio", "--dataset", "--model_dir", "--device")
RUN_FIX = "give this table another --model_dir for these flags, or run it with the flags those runs had (after --)"
COLLECT_FIX = "collect with the flags those runs had (after --), or from another --model_dir"
SPREAD_KINDS = {1: "std", 2: "std", 5: "se"}   # what the paper's number in brackets is, per table
SPREAD_NAMES = {"std": "standard deviation", "se": "standard error"}
NOTES = {
    1: ["The paper's 100 % CSP-MC-BLD number is its d = 1024 model (Table 3); at d = 256 it reports 73.62.",
        "Paper: mean (std) of 5 runs."],
    2: ["CSP-MC-BD / -B set --rand_sample_weight 0, which in the original code (and here) also drops the random-"
        "location term of the fine-tuning loss."],
    5: ["Paper: mean (standard error) of 5 runs. Our Img. Only uses the bundle's few-shot / full image predictions "
        "(the paper's Geo-SSL row); we have no Tile2Vec model."],
}


# ----------------------------------------------------------------------------------------------------------------
# published numbers

def paper_results(table, dataset):
    """{(model, ratio): (top1, spread or None)} of a paper table; "Img. Only" only for our image model."""
    frame = pd.read_csv(PAPER_RESULTS)
    frame = frame[(frame["table"] == table) & (frame["dataset"] == dataset)]
    found = {}
    for row in frame.itertuples():
        if row.model == "Img. Only" and row.setting != OUR_IMAGE_MODEL[dataset]:
            continue
        found[(row.model, round(row.ratio, 3))] = (row.top1, None if pd.isna(row.spread) else row.spread)
    return found


def other_paper_rows(table, dataset):
    """{label: {ratio: (top1, spread)}} of paper rows that we do not run (e.g. Img. Only (Tile2Vec))."""
    frame = pd.read_csv(PAPER_RESULTS)
    frame = frame[(frame["table"] == table) & (frame["dataset"] == dataset) & (frame["model"] == "Img. Only")
                  & (frame["setting"] != OUR_IMAGE_MODEL[dataset])]
    rows = {}
    for row in frame.itertuples():
        rows.setdefault(f"Img. Only ({row.setting})", {})[round(row.ratio, 3)] = (
            row.top1, None if pd.isna(row.spread) else row.spread)
    return rows


# ----------------------------------------------------------------------------------------------------------------
# results files

def final_top1(results, method):
    """Top-1 (%) of the final evaluation (`epoch` null) of `method` ("location_prior", "no_prior"), over all its
    splits (count-weighted), or None."""
    blocks = [block for block in results["evaluations"] if block["method"] == method and block["epoch"] is None]
    return overall_top1(blocks[-1]) if blocks else None


def is_finished(results, num_epochs):
    """A finished run: its final image × prior evaluation is there after all `num_epochs` fine-tuning epochs."""
    return (results is not None and final_top1(results, "location_prior") is not None
            and results["phases"]["fine-tuning"]["epochs_done"] >= num_epochs)


def mean_spread(values, kind):
    """(mean, spread, n) of the numbers in `values` that are not None; spread = the sample standard deviation
    (ddof 1, `kind` "std") or the standard error std/√n ("se"), None for fewer than two values; (None, None, 0)
    for none."""
    values = [value for value in values if value is not None]
    if not values:
        return None, None, 0
    series = pd.Series(values, dtype=float)
    if len(values) < 2:
        return float(series.mean()), None, 1
    std = float(series.std(ddof=1))
    return float(series.mean()), std if kind == "std" else std / len(values) ** 0.5, len(values)


def seed_dir(model_dir, seed):
    """The folder of the runs with `--seed seed` when a table or `seeds.py` runs several seeds."""
    return Path(model_dir) / f"seed{seed}"


# ----------------------------------------------------------------------------------------------------------------
# runs

def _pretrains(row):
    flags = ROWS[row][1]
    return flags[flags.index("--unsuper_loss") + 1] != "none"


def run_argv(dataset, preset, row, ratio, model_dir, device, overrides):
    """The train_unsuper.py flags of one (row, ratio) run."""
    image = ["--cnn_pred_type", "fewshot" if ratio < 1 else "full"]
    if _pretrains(row):
        image += ["--load_cnn_features_train", "T"]
    return (["--dataset", dataset, "--model_dir", os.path.join(str(model_dir), ""), "--device", device]
            + COMMON + PRESETS[(preset, dataset)] + ROWS[row][1] + image
            + ["--train_sample_ratio", f"{ratio:g}"] + list(overrides))


def results_path(argv):
    """(where the run with these flags writes its results file, its params)."""
    params = default_params(argv)
    return Path(output_file_names(checkpoints.model_file_names(params)[1])[1]), params


def _mismatch_lines(mismatched):
    """One line per {path: differences} entry: the file and each flag's value here and in the file."""
    return "\n".join(f"  {path}: {describe(differences)}" for path, differences in mismatched.items())


@dataclass
class Run:
    """One (row, ratio) cell of a table: the flags of its run, their params, its results file and what it holds."""
    row: str
    ratio: float
    argv: list
    params: dict
    path: Path
    results: Optional[dict]


def table_ratios(ratios):
    """The table's ratio columns: the paper's and the requested ones (3 decimals, as in the run files' names)."""
    return sorted(set(PAPER_RATIOS) | {round(ratio, 3) for ratio in ratios})


def flag_mismatches(runs, to_run):
    """{path: flag differences} of the results files of `runs`, and of the checkpoints that `to_run` would resume
    from or write, that were made with other flags (a pre-trained checkpoint: other flags but those of fine-tuning,
    as it serves every ratio)."""
    mismatched = {run.path: flag_differences(run.params, run.results.get("params", {}))
                  for run in runs if run.results is not None}
    for run in to_run:
        pretrained, finetuned = checkpoints.model_file_names(run.params)
        for name, ignore in ((pretrained, FINETUNING_FLAGS), (finetuned, ())):
            path = checkpoints.find_checkpoint(name) if name else None
            if path is not None and path not in mismatched:
                mismatched[path] = flag_differences(run.params, checkpoints.load_checkpoint(path)["params"], ignore)
    return {path: differences for path, differences in mismatched.items() if differences}


def check_other_results(runs, model_dir, fix):
    """For --collect_only: ValueError when no cell has a finished run but `model_dir` holds results of this
    dataset's runs with other flags (so that a table of "–" does not replace one made from them)."""
    if any(is_finished(run.results, run.params["num_epochs"]) for run in runs):
        return
    ours = {run.path for run in runs}
    others = [(path, read_results(path)) for path in sorted(Path(model_dir).glob("*.results.json"))
              if path not in ours]
    others = [(path, results["params"]) for path, results in others
              if results and results.get("params", {}).get("dataset") == runs[0].params["dataset"]]
    if others:
        closest = {path: min((flag_differences(run.params, recorded) for run in runs), key=len)
                   for path, recorded in others}
        raise ValueError(f"--collect_only: {model_dir} holds no finished run made with these flags, but "
                         f"{len(others)} results file(s) of runs with other flags (each against the closest cell "
                         f"of this table):\n{_mismatch_lines(closest)}\nFix: {fix}. The table was not written.")


def check_input_files(dataset, runs):
    """FileNotFoundError listing every image-prediction (and, for pre-training, image-feature) file that `runs`
    need and the data folder lacks, with the fixes."""
    key = f"{dataset}_data_dir"
    data_dir = paths.get_paths(key)
    needed = {}
    for run in runs:
        params = run.params
        name = datasets.prediction_file(dataset, params["eval_split"], params["cnn_pred_type"],
                                        params["train_sample_ratio"], params["inat2018_resolution"],
                                        params["cnn_model"])
        needed.setdefault(name, params["cnn_pred_type"] == "fewshot")
        if params["do_unsuper_train"] and params["unsuper_loss"] != "none":
            needed.setdefault(datasets.feature_file(dataset, "train", params["inat2018_resolution"],
                                                    params["cnn_model"]), False)
    missing = {name: fewshot for name, fewshot in needed.items() if not (data_dir / name).is_file()}
    if not missing:
        return
    fixes = []
    if any(missing.values()):
        fixes.append("for the few-shot predictions: the fully supervised ones at every ratio (`-- --cnn_pred_type "
                     "full`, with its own --model_dir), or --ratios without the ratios that lack them")
    if not all(missing.values()):
        fixes.append(f"for the others: {paths.how_to_set(key)}")
    raise FileNotFoundError(f"the runs of this table need {len(missing)} file(s) that {data_dir} lacks; nothing was "
                            f"run:\n" + "\n".join(f"  {name}" for name in sorted(missing))
                            + "\nFix: " + "; ".join(fixes) + ".")


def collect(kind, dataset, preset, rows, ratios, model_dir, device="auto", overrides=(), collect_only=False):
    """{(row, ratio): finished results document or None} for every run row of the table at every ratio column;
    the runs of `rows` × `ratios` that have not finished are run first (unless `collect_only`). Stops before
    running anything when a results file or checkpoint was made with other flags, or an input file is missing."""
    requested = {round(ratio, 3): ratio for ratio in ratios}
    runs = []
    for row in TABLES[(kind, dataset)][2]:
        if ROWS[row][1] is None:
            continue
        for column in table_ratios(ratios):
            argv = run_argv(dataset, preset, row, requested.get(column, column), model_dir, device, overrides)
            path, params = results_path(argv)
            runs.append(Run(row, column, argv, params, path, read_results(path)))
    wanted = [run for run in runs if run.row in rows and run.ratio in requested]
    to_run = [] if collect_only else [run for run in wanted if not is_finished(run.results, run.params["num_epochs"])]
    fix = COLLECT_FIX if collect_only else RUN_FIX
    mismatched = flag_mismatches(runs, to_run)
    if mismatched:
        raise ValueError(f"{len(mismatched)} file(s) of this table's runs were made with other flags; they are "
                         f"neither used nor overwritten:\n{_mismatch_lines(mismatched)}\nFix: {fix}.")
    if collect_only:
        check_other_results(runs, model_dir, fix)
    check_input_files(dataset, to_run)
    for run in to_run:
        logger.info("Running %s at %g %% (%s preset): %s", ROWS[run.row][0], run.ratio * 100, preset, run.path.name)
        train_unsuper.main(run.argv)
        run.results = read_results(run.path)
    found = {(run.row, run.ratio): run.results if is_finished(run.results, run.params["num_epochs"]) else None
             for run in runs}
    for run in wanted:
        if found[(run.row, run.ratio)] is None:
            logger.info("No finished results for %s at %g %%: %s", ROWS[run.row][0], run.ratio * 100, run.path)
    return found


# ----------------------------------------------------------------------------------------------------------------
# the table

def _format(value, spread=None):
    if value is None:
        return MISSING
    return f"{value:.2f}" if spread is None else f"{value:.2f} ({spread:.2f})"


def _ratio_label(ratio):
    return f"{ratio * 100:g}%"


def _our_top1(found, row, ratio):
    """Our top-1 of one cell from one seed's `found`, or None."""
    if row == "img_only":
        tops = [final_top1(res, "no_prior") for (_, r), res in found.items() if r == ratio and res]
        return next((top for top in tops if top is not None), None)
    results = found.get((row, ratio))
    return final_top1(results, "location_prior") if results else None


def assemble(kind, dataset, preset, founds, ratios, overrides=()):
    """The table as a DataFrame in the paper's layout: one line per paper row, per ratio our top-1 (the mean over
    `founds`, one `collect` result per seed), its spread (of the paper's kind for this table; none for one seed)
    and number of runs, the paper's top-1 and its spread; the "preset" and "flags after --" columns say which flags
    our numbers used."""
    table, _, rows = TABLES[(kind, dataset)]
    paper = paper_results(table, dataset)
    columns = table_ratios(ratios)
    lines = []
    for row in rows:
        name = ROWS[row][0]
        line = {"model": name if row != "img_only" else f"{name} ({OUR_IMAGE_MODEL[dataset]})", "preset": preset,
                "flags after --": shlex.join(overrides)}
        for ratio in columns:
            ours, our_spread, runs = mean_spread([_our_top1(found, row, ratio) for found in founds],
                                                 SPREAD_KINDS[table])
            top1, spread = paper.get((name, ratio), (None, None))
            label = _ratio_label(ratio)
            line.update({f"{label} ours": None if ours is None else round(ours, 2),
                         f"{label} ours spread": None if our_spread is None else round(our_spread, 2),
                         f"{label} ours runs": runs, f"{label} paper": top1, f"{label} paper spread": spread})
        lines.append(line)
    if kind == "comparison":
        for label, values in other_paper_rows(table, dataset).items():
            line = {"model": label, "preset": "–", "flags after --": ""}
            for ratio in columns:
                top1, spread = values.get(ratio, (None, None))
                line.update({f"{_ratio_label(ratio)} ours": None, f"{_ratio_label(ratio)} ours spread": None,
                             f"{_ratio_label(ratio)} ours runs": 0, f"{_ratio_label(ratio)} paper": top1,
                             f"{_ratio_label(ratio)} paper spread": spread})
            lines.insert(1, line)
    return pd.DataFrame(lines)


def _format_ours(row, ratio, num_seeds):
    text = _format(_value(row[f"{ratio} ours"]), _value(row[f"{ratio} ours spread"]))
    runs = row[f"{ratio} ours runs"]
    return f"{text} n={runs}" if num_seeds > 1 and 0 < runs < num_seeds else text


def to_markdown(frame, kind, dataset, preset, overrides=(), seeds=None):
    """The table as markdown: per ratio "ours" and "paper" (each with its spread) side by side, and the notes; the
    caption gives the preset's values, the flags given after `--` (which replace the preset's) and the seeds."""
    table, title, _ = TABLES[(kind, dataset)]
    ratios = [column[:-len(" ours")] for column in frame.columns if column.endswith(" ours")]
    header = ["Model", "Preset"] + [f"{ratio} {who}" for ratio in ratios for who in ("ours", "paper")]
    given = f" and, given after `--`, `{shlex.join(overrides)}`" if overrides else ""
    num_seeds = len(seeds) if seeds else 1
    if num_seeds > 1:
        given += (f"; mean ({SPREAD_NAMES[SPREAD_KINDS[table]]}) over seeds {' '.join(map(str, seeds))}, n = the "
                  f"runs where fewer than {num_seeds} finished")
    lines = [f"### Table {table}: {title} — ours beside the paper", "",
             f"Our numbers: preset `{preset}` ({preset_description(preset, dataset, overrides)}){given}.", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in frame.to_dict("records"):
        cells = [row["model"], row["preset"]]
        for ratio in ratios:
            spread = row[f"{ratio} paper spread"]
            cells += [_format_ours(row, ratio, num_seeds), _format(_value(row[f"{ratio} paper"]), _value(spread))]
        lines.append("| " + " | ".join(cells) + " |")
    notes = NOTES.get(table, []) + [
        "Img. Only = the \"No prior\" block of a run at that ratio; image predictions: few-shot below 100 %, "
        "fully supervised at 100 %.", f"{MISSING} = no finished run with these flags (or no published number)."]
    return "\n".join(lines + [""] + [f"* {note}" for note in notes]) + "\n"


def _value(value):
    return None if value is None or pd.isna(value) else float(value)


def flag_names(words):
    """The flags named in command-line `words` ("--lr 0.1" and "--lr=0.1" both name --lr)."""
    return {word.split("=", 1)[0] for word in words if word.startswith("--")}


def preset_description(preset, dataset, overrides=()):
    """The preset's flag values, less those that `overrides` (the flags given after `--`) set."""
    flags, replaced = PRESETS[(preset, dataset)], flag_names(overrides)
    return ", ".join(f"{flags[i][2:]} {flags[i + 1]}" for i in range(0, len(flags), 2) if flags[i] not in replaced)


def write_table(kind, dataset, preset, founds, ratios, out_dir, overrides=(), seeds=None):
    """Write `table{N}_{dataset}_{preset}.md` and `.csv` into `out_dir` from `founds` (one `collect` result per seed
    of `seeds`, or one); returns (markdown path, csv path, markdown text)."""
    frame = assemble(kind, dataset, preset, founds, ratios, overrides)
    table = TABLES[(kind, dataset)][0]
    markdown = to_markdown(frame, kind, dataset, preset, overrides, seeds)
    return (*write_markdown_and_csv(out_dir, f"table{table}_{dataset}_{preset}", markdown, frame), markdown)


def write_markdown_and_csv(out_dir, stem, markdown, frame):
    """Write `{stem}.md` and `{stem}.csv` into `out_dir` (created if missing); returns their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{stem}.md").write_text(markdown)
    frame.to_csv(out_dir / f"{stem}.csv", index=False)
    return out_dir / f"{stem}.md", out_dir / f"{stem}.csv"


# ----------------------------------------------------------------------------------------------------------------
# command line

def check_seeds(seeds):
    """ValueError unless the --seeds values (a list of int, or None) are valid --seed values, each given once."""
    if not seeds:
        return
    words = " ".join(map(str, seeds))
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds {words}: each seed once")
    if not all(0 <= seed < 2 ** 63 for seed in seeds):
        raise ValueError(f"--seeds {words}: every seed must be in [0, 2**63), as --seed")


def make_parser():
    p = argparse.ArgumentParser(description="Run or collect the runs of a CSP paper table and write it beside the "
                                            "published numbers (flags after the table's own go to every run)",
                                allow_abbrev=False, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("table", choices=("comparison", "ablation"),
                   help="comparison = Table 1 (inat_2018) / Table 5 (fmow); ablation = Table 2 "
                        "(and encoders = every location encoder: `python tables.py encoders --help`)")
    p.add_argument("--dataset", required=True, choices=("inat_2018", "fmow"), help="the dataset of the table")
    p.add_argument("--data_dir", default=None, help="folder holding the dataset folders (None: CSP_DATA_DIR)")
    p.add_argument("--model_dir", default=None,
                   help="folder of the runs (None: model_dir/tables/{dataset}/{preset}/ in the repository, "
                        "wherever the command starts)")
    p.add_argument("--out_dir", default=None, help="folder of the .md and .csv (None: the model folder)")
    p.add_argument("--ratios", type=float, nargs="+", default=list(PAPER_RATIOS), help="label ratios in (0, 1]")
    p.add_argument("--rows", nargs="+", default=None,
                   help=f"rows to run or collect (None: all of the table): {', '.join(ROWS)}")
    p.add_argument("--preset", default="released", choices=PRESET_NAMES,
                   help="flag values of the runs: the run scripts' (released) or the paper's appendix A.4 (paper)")
    p.add_argument("--device", default="auto", help="torch device of the runs (auto: a GPU if there is one)")
    p.add_argument("--seeds", type=int, nargs="+", default=None,
                   help="run every cell once per seed (--seed S, runs in {model_dir}/seed{S}/) and show the mean "
                        "and spread; None: one run per cell with the runs' --seed (0) in the model folder")
    p.add_argument("--collect_only", action="store_true", help="only read finished runs' results files")
    return p


def _log_to_console(log=logger):
    """The messages of `log` (default: this module's) on the console; not through the root logger, which echoes the
    runs' own lines."""
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s - %(levelname)s - %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False


def main(argv=None):
    _log_to_console()
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["encoders"]:
        from . import encoder_table     # it builds on this module
        return encoder_table.main(argv[1:])
    args, overrides = make_parser().parse_known_args(argv)
    overrides = [word for word in overrides if word != "--"]
    own = sorted(flag_names(overrides) & set(OWN_FLAGS + (("--seed",) if args.seeds else ())))
    if own:
        raise ValueError(f"{', '.join(own)}: set by the table itself; use its --ratios, --dataset, --model_dir, "
                         f"--device, --seeds")
    _, _, table_rows = TABLES[(args.table, args.dataset)]
    rows = table_rows if args.rows is None else args.rows
    unknown = [row for row in rows if row not in table_rows]
    if unknown:
        raise ValueError(f"--rows {' '.join(unknown)}: not in this table; its rows are {', '.join(table_rows)}")
    bad = [ratio for ratio in args.ratios if not 0 < ratio <= 1]
    if bad:
        raise ValueError(f"--ratios must be in (0, 1], got {bad}")
    if args.data_dir:
        os.environ["CSP_DATA_DIR"] = str(args.data_dir)
    model_dir = Path(args.model_dir or DEFAULT_MODEL_ROOT / args.dataset / args.preset)
    check_seeds(args.seeds)
    for row in rows:
        if ROWS[row][1] is not None:
            default_params(run_argv(args.dataset, args.preset, row, args.ratios[0], model_dir, args.device, overrides))
    founds = {}
    for seed in args.seeds or [None]:
        if seed is not None:
            logger.info("Seed %d (%d of %d)", seed, len(founds) + 1, len(args.seeds))
        founds[seed] = collect(args.table, args.dataset, args.preset, rows, args.ratios,
                               model_dir if seed is None else seed_dir(model_dir, seed), args.device,
                               overrides + ([] if seed is None else ["--seed", str(seed)]), args.collect_only)
    md_path, csv_path, markdown = write_table(args.table, args.dataset, args.preset, list(founds.values()),
                                              args.ratios, args.out_dir or model_dir, overrides, args.seeds)
    print(markdown)
    logger.info("Wrote %s and %s", md_path, csv_path)
    return founds if args.seeds else founds[None]


if __name__ == "__main__":
    run_command(main)
