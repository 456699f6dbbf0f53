"""The paper's tables: run (or collect) each row at each label ratio, then write them beside the published numbers.

    python tables.py comparison --dataset inat_2018    # Table 1 (--dataset fmow: Table 5)
    python tables.py ablation --dataset inat_2018      # Table 2, the CSP-MC loss terms
    python tables.py comparison --dataset fmow --seeds 0 1 2 3 4    # every cell per seed: mean (spread)
    python tables.py encoders --dataset fmow           # every location encoder (encoder_table.py)

Each (row, ratio) is one `train_unsuper.py` run with the preset's flags, the row's, the ratio and any flags given after
`--` (they win); finished runs are collected, unfinished ones resumed (`table_runs`). Writes
`table{N}_{dataset}_{preset}.md` and `.csv` into --out_dir (default: the model folder).
"""
import argparse
import logging
import os
import shlex
import sys
from pathlib import Path

import pandas as pd

if not __package__:  # run as a script (`python tables.py`): its folder is imported as the package csp
    __package__ = __import__("as_package").PACKAGE
from . import encoder_table
from . import train_unsuper
from .arguments import default_params, run_command
from .table_runs import (COLLECT_FIX, COMMON, DEFAULT_MODEL_ROOT, MISSING, OWN_FLAGS, PRESET_NAMES, PRESETS, RUN_FIX,
                         Run, check_input_files, check_other_results, check_seeds, final_top1, flag_mismatches,
                         flag_names, is_finished, log_to_console, mean_spread, mismatch_lines, preset_description,
                         results_path, seed_dir, write_markdown_and_csv)
from .results import read_results

logger = logging.getLogger(__name__)

PAPER_RESULTS = Path(__file__).with_name("paper_results.csv")
PAPER_RATIOS = (0.05, 0.1, 0.2, 1.0)

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
    """{label: {ratio: (top1, spread)}} of the paper's rows that we do not run (Img. Only of other image models)."""
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









# ----------------------------------------------------------------------------------------------------------------
# runs

def _pretrains(row):
    flags = ROWS[row][1]
    return flags[flags.index("--unsuper_loss") + 1] != "none"


def run_argv(dataset, preset, row, ratio, model_dir, device, overrides):
    image = ["--cnn_pred_type", "fewshot" if ratio < 1 else "full"]
    if _pretrains(row):
        image += ["--load_cnn_features_train", "T"]
    return (["--dataset", dataset, "--model_dir", os.path.join(str(model_dir), ""), "--device", device]
            + COMMON + PRESETS[(preset, dataset)] + ROWS[row][1] + image
            + ["--train_sample_ratio", f"{ratio:g}"] + list(overrides))








def table_ratios(ratios):
    """The ratio columns: the paper's and the requested ones, rounded to 3 decimals as in the run files' names."""
    return sorted(set(PAPER_RATIOS) | {round(ratio, 3) for ratio in ratios})








def collect(kind, dataset, preset, rows, ratios, model_dir, device="auto", overrides=(), collect_only=False):
    """{(row, ratio): finished results or None} of every cell, after running the unfinished ones of `rows` × `ratios`
    (unless `collect_only`)."""
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
                         f"neither used nor overwritten:\n{mismatch_lines(mismatched)}\nFix: {fix}.")
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
    if row == "img_only":
        tops = [final_top1(res, "no_prior") for (_, r), res in found.items() if r == ratio and res]
        return next((top for top in tops if top is not None), None)
    results = found.get((row, ratio))
    return final_top1(results, "location_prior") if results else None


def assemble(kind, dataset, preset, founds, ratios, overrides=()):
    """The table as a DataFrame in the paper's layout: per row and ratio our top-1 (mean over `founds`, one per seed),
    spread and runs, beside the paper's."""
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
    """The table as markdown, "ours" beside "paper" per ratio, with the preset's values and the notes."""
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






def write_table(kind, dataset, preset, founds, ratios, out_dir, overrides=(), seeds=None):
    """Write `table{N}_{dataset}_{preset}.md` and `.csv` into `out_dir`; returns (md path, csv path, markdown)."""
    frame = assemble(kind, dataset, preset, founds, ratios, overrides)
    table = TABLES[(kind, dataset)][0]
    markdown = to_markdown(frame, kind, dataset, preset, overrides, seeds)
    return (*write_markdown_and_csv(out_dir, f"table{table}_{dataset}_{preset}", markdown, frame), markdown)




# ----------------------------------------------------------------------------------------------------------------
# command line



def make_parser():
    p = argparse.ArgumentParser(description="Run or collect the runs of a CSP paper table and write it beside the "
                                            "published numbers (flags after the table's own go to every run)",
                                allow_abbrev=False, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("table", choices=("comparison", "ablation"), metavar="{comparison,ablation,encoders}",
                   help="comparison = Table 1 (inat_2018) / Table 5 (fmow); ablation = Table 2 (both take the "
                        "flags below); encoders = every location encoder, with flags of its own: `python tables.py "
                        "encoders --help`")
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




def main(argv=None):
    log_to_console(logger)
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["encoders"]:
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
    run_command(main, output_flag="--out_dir")
