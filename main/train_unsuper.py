"""Train and evaluate a CSP location encoder: `python train_unsuper.py --flag value …` (run from inside `main/`).

The flow of the original entry point: parse the flags → `Trainer` → `run_train()` (pre-training and/or
fine-tuning) → `run_eval_final()` (image × location prior on the evaluation split) → `run_eval_spa_enc_only()`
(location encoder alone, after reloading the fine-tuned checkpoint) → `log_summary()` (one line with the final
Top-1s). The run scripts at the repository's top level
(`run-inat_2018-contsoftmax.sh`, `run-fmow-contsoftmax.sh`) call it with the paper's flags.
"""
import argparse
import shlex
import sys

if not __package__:  # run as a script (`python train_unsuper.py`): its folder is imported as the package csp
    __package__ = __import__("as_package").PACKAGE
from . import arguments
from . import results
from .trainer import Trainer, check_params


def main(argv=None, console=True, progress=None):
    """Run with the command-line flags `argv` (default: sys.argv[1:]); returns the results document
    (`Trainer.results`: params, phases and every evaluation block), which is also written next to the log.
    `console=False` keeps the log lines off the console (they still go to the log file); `progress` shows the
    progress bars on a terminal (default: as `console`)."""
    params = arguments.default_params(sys.argv[1:] if argv is None else argv)
    with Trainer(params, console, progress) as trainer:
        trainer.run_train()
        trainer.run_eval_final()
        trainer.run_eval_spa_enc_only("LocEnc ", load_model=True)
        results.log_summary(trainer.evaluations, params["eval_split"])
        return trainer.results


def check_argv(argv):
    """ValueError naming the flag for run flags `argv` (a list of str) that train_unsuper.py does not know or would
    refuse, checked without reading data or writing anything (for commands that start runs: the demo, the tables)."""
    parser = arguments.make_args_parser()
    parser.exit_on_error = False
    try:
        _, unknown = parser.parse_known_args(argv)
    except argparse.ArgumentError as err:
        raise ValueError(f"{err} (a flag of the runs; python main/train_unsuper.py --help lists them)") from None
    if unknown:
        raise ValueError(f"{' '.join(unknown)}: not a flag of train_unsuper.py (flags for the runs go after --; "
                         f"python main/train_unsuper.py --help lists them)")
    params = arguments.default_params(argv)
    check_params(params)
    arguments.resolve_device(params["device"])


def script_argv(path):
    """The flags a run script passes to train_unsuper.py (its words after `train_unsuper.py`, up to "$@")."""
    with open(path) as handle:
        words = shlex.split(handle.read().replace("\\\n", " "), comments=True)
    if "train_unsuper.py" not in words:
        raise ValueError(f"{path} does not call train_unsuper.py")
    flags = words[words.index("train_unsuper.py") + 1:]
    return flags[:flags.index("$@")] if "$@" in flags else flags


if __name__ == "__main__":
    arguments.run_command(main)
