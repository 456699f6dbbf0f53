"""Train and evaluate a CSP location encoder: `python train_unsuper.py --flag value …` (`--help` lists the flags).
"""
import shlex
import sys

if not __package__:  # run as a script (`python train_unsuper.py`): its folder is imported as the package csp
    __package__ = __import__("as_package").PACKAGE
from . import arguments
from . import distributed
from . import results
from .trainer import Trainer


def main(argv=None, console=True, progress=None):
    """Run with the flags `argv` (default sys.argv[1:]); returns the results document (also written)."""
    params = arguments.default_params(sys.argv[1:] if argv is None else argv)
    with Trainer(params, console, progress) as trainer:
        trainer.run_train()
        # the evaluations run on torchrun's process 0 alone
        with distributed.together(lambda err: arguments.error_line(err, "--model_dir")):
            trainer.run_eval_final()
            trainer.run_eval_spa_enc_only("LocEnc ", load_model=True)
            results.log_summary(trainer.evaluations, params["eval_split"])
        return trainer.results


def script_argv(path):
    """The flags a run script passes to train_unsuper.py (its words after `train_unsuper.py`, up to "$@")."""
    with open(path) as handle:
        words = shlex.split(handle.read().replace("\\\n", " "), comments=True)
    if "train_unsuper.py" not in words:
        raise ValueError(f"{path} does not call train_unsuper.py")
    flags = words[words.index("train_unsuper.py") + 1:]
    return flags[:flags.index("$@")] if "$@" in flags else flags


if __name__ == "__main__":
    arguments.run_command(main, output_flag="--model_dir")
