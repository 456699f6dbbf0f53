"""The runs behind a table: presets, one cell's run and results file, and the checks before anything
runs. A results file or checkpoint made with other flags (`arguments.NOT_RUN_FLAGS` aside) stops the table.
"""
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pandas as pd

from . import checkpoints
from . import datasets
from . import paths
from .arguments import FINETUNING_FLAGS, default_params
from .evaluation import overall_top1
from .run_flags import describe, flag_differences
from .results import output_file_names, read_results

DEFAULT_MODEL_ROOT = paths.MAIN_DIR.parent / "model_dir" / "tables"
MISSING = "–"
# the flags of every table run; PRESETS adds those of the preset: `released` = the run scripts' values (for fMoW
# those of the released checkpoint: SimCSE weight 0.1, in-batch temperature 1), `paper` = the paper's appendix A.4
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


@dataclass
class Run:
    """One cell of a table: its run's flags and params, its results file and what that holds now."""
    row: str
    ratio: float
    argv: list
    params: dict
    path: Path
    results: Optional[dict]


def results_path(argv):
    params = default_params(argv)
    return Path(output_file_names(checkpoints.model_file_names(params)[1])[1]), params


def final_top1(results, method):
    """Top-1 (%) of the final evaluation of `method`, count-weighted over splits, or None."""
    blocks = [block for block in results["evaluations"] if block["method"] == method and block["epoch"] is None]
    return overall_top1(blocks[-1]) if blocks else None


def is_finished(results, num_epochs):
    """True when the final image × prior evaluation is there and all `num_epochs`
    fine-tuning epochs are done."""
    return (results is not None and final_top1(results, "location_prior") is not None
            and results["phases"]["fine-tuning"]["epochs_done"] >= num_epochs)


def mean_spread(values, kind):
    """(mean, spread, n) of the non-None values; spread: std (`kind` "std") or std/√n ("se"), None
    below two values."""
    values = [value for value in values if value is not None]
    if not values:
        return None, None, 0
    series = pd.Series(values, dtype=float)
    if len(values) < 2:
        return float(series.mean()), None, 1
    std = float(series.std(ddof=1))
    return float(series.mean()), std if kind == "std" else std / len(values) ** 0.5, len(values)


def seed_dir(model_dir, seed):
    """The folder of the runs with `--seed seed` when a command runs several seeds."""
    return Path(model_dir) / f"seed{seed}"


def flag_names(words):
    """The flags named in `words` ("--lr 0.1" and "--lr=0.1")."""
    return {word.split("=", 1)[0] for word in words if word.startswith("--")}


def preset_description(preset, dataset, overrides=()):
    """The preset's flag values, less those that `overrides` set."""
    flags, replaced = PRESETS[(preset, dataset)], flag_names(overrides)
    return ", ".join(f"{flags[i][2:]} {flags[i + 1]}" for i in range(0, len(flags), 2) if flags[i] not in replaced)


def check_seeds(seeds):
    """ValueError unless the --seeds values are valid --seed values, each given once."""
    if not seeds:
        return
    words = " ".join(map(str, seeds))
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds {words}: each seed once")
    if not all(0 <= seed < 2 ** 63 for seed in seeds):
        raise ValueError(f"--seeds {words}: every seed must be in [0, 2**63), as --seed")


def mismatch_lines(mismatched):
    return "\n".join(f"  {path}: {describe(differences)}" for path, differences in mismatched.items())


def flag_mismatches(runs, to_run):
    """{path: flag differences} of results files and checkpoints made with other flags."""
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
    """--collect_only: ValueError when no cell has a finished run but `model_dir` holds results
    made with other flags."""
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
                         f"of this table):\n{mismatch_lines(closest)}\nFix: {fix}. The table was not written.")


def check_input_files(dataset, runs):
    """FileNotFoundError listing every input file that `runs` need and the data folder lacks."""
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


def write_markdown_and_csv(out_dir, stem, markdown, frame):
    """Write `{stem}.md` and `{stem}.csv` into `out_dir`; returns their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{stem}.md").write_text(markdown)
    frame.to_csv(out_dir / f"{stem}.csv", index=False)
    return out_dir / f"{stem}.md", out_dir / f"{stem}.csv"


def log_to_console(log):
    """`log`'s messages on the console, not through the root logger."""
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s - %(levelname)s - %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
