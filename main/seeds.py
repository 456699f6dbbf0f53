"""One run with several seeds: `train_unsuper.py` once per seed in `{model_dir}/seed{S}/`, then the mean and
spread of the final Top-1s.

    python seeds.py --seeds 0 1 2 3 4 -- --dataset fmow --num_epochs 30 ...         # flags of train_unsuper.py
    python seeds.py --seeds 0 1 2 --script ../run-fmow-contsoftmax.sh -- --device cpu  # a run script's flags
    SEEDS="0 1 2 3 4" bash run-fmow-contsoftmax.sh                                  # the same, from the script
"""
import argparse
import logging
import os

if not __package__:  # run as a script (`python seeds.py`): its folder is imported as the package csp
    __package__ = __import__("as_package").PACKAGE
from . import arguments
from . import train_unsuper
from .table_runs import check_seeds, final_top1, flag_names, mean_spread, seed_dir

logger = logging.getLogger(__name__)

METHODS = (("location_only", "LocEnc Top-1"), ("location_prior", "Image x prior Top-1"))


def make_parser():
    p = argparse.ArgumentParser(description="Run train_unsuper.py once per seed (flags after --) and report the mean "
                                            "and spread of the final Top-1s",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter, allow_abbrev=False)
    p.add_argument("--seeds", type=int, nargs="+", required=True, help="the seeds, each once (--seed S of the runs)")
    p.add_argument("--script", default=None,
                   help="a run script (run-*.sh) whose train_unsuper.py flags come first (None: no script)")
    return p


def seed_argv(argv, seed):
    """`argv`, then `--seed seed` and the seed's own model folder (they win)."""
    model_dir = arguments.default_params(argv)["model_dir"]
    return list(argv) + ["--seed", str(seed), "--model_dir", os.path.join(str(seed_dir(model_dir, seed)), "")]


def summary_lines(results):
    """One line per evaluation: mean, std and standard error of the final Top-1s."""
    lines = []
    for method, label in METHODS:
        tops = {seed: final_top1(result, method) for seed, result in results.items()}
        mean, std, runs = mean_spread(tops.values(), "std")
        if not runs:
            continue
        each = ", ".join(f"{seed}: {top:.2f}" for seed, top in tops.items() if top is not None)
        if runs < 2:
            lines.append(f"{label}: {mean:.2f} (1 seed: {each})")
        else:
            se = mean_spread(tops.values(), "se")[1]
            lines.append(f"{label}: {mean:.2f} ± {std:.2f} (std), ± {se:.2f} (s.e.) over {runs} seeds ({each})")
    return lines


def main(argv=None):
    """Returns {seed: results document}."""
    args, flags = make_parser().parse_known_args(argv)
    flags = [word for word in flags if word != "--"]
    check_seeds(args.seeds)
    if "--seed" in flag_names(flags):
        raise ValueError("--seed: set per run by --seeds; leave it out of the flags after --")
    if args.script is not None:
        flags = train_unsuper.script_argv(args.script) + flags
    results = {}
    for number, seed in enumerate(args.seeds, 1):
        print(f"seeds.py: seed {seed} ({number} of {len(args.seeds)})", flush=True)
        results[seed] = train_unsuper.main(seed_argv(flags, seed))
    for line in summary_lines(results):
        print(line)
    return results


if __name__ == "__main__":
    arguments.run_command(main, output_flag="--model_dir")
