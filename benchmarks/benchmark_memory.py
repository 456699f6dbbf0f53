"""Peak memory of writing and of training on image features larger than the memory one wants to spend on them.

    python benchmarks/benchmark_memory.py --out /tmp/big                    # 2 000 000 × 2 048 float32: 16 GB
    python benchmarks/benchmark_memory.py --out /tmp/big --num_train 20000  # a quick look

Writes a synthetic yfcc dataset, then for each `--storages` value runs `--num_batches` pre-training steps of the
iNat2018 run script's `Trainer`; each step in a process of its own, printing samples/s and its peak and anonymous
resident memory. The feature file takes num_train × feat_dim × 4 bytes of disk.
"""
import argparse
import multiprocessing
import os
import shutil
import time
from pathlib import Path

import checkout  # noqa: F401  (this checkout's main/ as the package csp)
from csp import arguments
from csp import train_unsuper
from benchmark_training import SCRIPT, steps_per_second
from csp.synthetic_data import write_synthetic_dataset
from csp.trainer import PRETRAINING, Trainer


def _memory():
    """{peak RSS, RssAnon, RssFile} of this process in GiB, from /proc/self/status."""
    with open("/proc/self/status") as handle:
        fields = dict(line.split(":", 1) for line in handle)
    return {key: int(fields[key].split()[0]) / 2 ** 20 for key in ("VmHWM", "RssAnon", "RssFile")}


def _write(out, num_train, feat_dim):
    start = time.perf_counter()
    write_synthetic_dataset("yfcc", out, num_train=num_train, num_val=10000, num_test=0, feat_dim=feat_dim)
    return {"seconds": time.perf_counter() - start, **_memory()}


def _train(out, storage, num_batches):
    os.environ["CSP_DATA_DIR"] = str(out)
    argv = train_unsuper.script_argv(SCRIPT) + [
        "--dataset", "yfcc", "--device", "cpu", "--train_sample_ratio", "1", "--feature_storage", storage,
        "--model_dir", str(Path(out) / "models")]
    with Trainer(arguments.default_params(argv), console=False) as trainer:
        kind = type(trainer.train_feats).__name__
        speed = steps_per_second(trainer, PRETRAINING, 1024, num_batches)
    return {"features": kind, "samples/s": speed, **_memory()}


def _in_child(function, *args):
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(function, args)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder for the synthetic data (its yfcc/ is written there)")
    parser.add_argument("--num_train", type=int, default=2_000_000, help="training rows")
    parser.add_argument("--feat_dim", type=int, default=2048, help="image-feature width")
    parser.add_argument("--storages", nargs="+", default=["auto", "mapped"], help="--feature_storage values")
    parser.add_argument("--num_batches", type=int, default=20, help="timed pre-training steps at batch 1 024")
    parser.add_argument("--keep", action="store_true", help="keep the data folder")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if (out / "yfcc").exists():
        raise ValueError(f"--out {out} already holds yfcc/; give an empty or new folder")
    gib = args.num_train * args.feat_dim * 4 / 2 ** 30
    print(f"writing {args.num_train} x {args.feat_dim} float32 features ({gib:.1f} GiB) to {out}/yfcc …", flush=True)
    try:
        written = _in_child(_write, out, args.num_train, args.feat_dim)
        print(f"{'write':20s} {written['seconds']:8.0f} s   peak RSS {written['VmHWM']:6.2f} GiB", flush=True)
        for storage in args.storages:
            trained = _in_child(_train, out, storage, args.num_batches)
            print(f"{'train ' + storage:20s} {trained['samples/s']:8.0f} samples/s   peak RSS "
                  f"{trained['VmHWM']:6.2f} GiB (anonymous {trained['RssAnon']:.2f} GiB, file-backed "
                  f"{trained['RssFile']:.2f} GiB at the end; features: {trained['features']})", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(out / "yfcc", ignore_errors=True)
            shutil.rmtree(out / "models", ignore_errors=True)
    print(f"machine: {os.cpu_count()} CPUs, {os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE') / 2 ** 30:.0f} "
          f"GiB memory")


if __name__ == "__main__":
    arguments.run_command(main)
