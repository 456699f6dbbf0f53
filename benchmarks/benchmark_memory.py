"""Speed and peak memory of training on image features larger than the memory one wants to spend on them.

    python benchmarks/benchmark_memory.py --out /tmp/big                    # 2 000 000 × 2 048 float32: 15.3 GiB
    python benchmarks/benchmark_memory.py --out /tmp/big --num_train 20000  # a quick look

Writes a synthetic yfcc dataset and syncs it to the disk, then for each `--storages` value, in a process of its
own, builds the iNat2018 run script's `Trainer` and times `--num_batches` pre-training steps at batch 1 024
`--rounds` times, the feature file's pages evicted from the page cache before each round (as if it were larger than
the memory); prints samples/s (median [min–max]), the share of the file cached before the rounds, and the peak and
anonymous resident memory. The feature file takes num_train × feat_dim × 4 bytes of disk (2 with float16).
"""
import argparse
import multiprocessing
import os
import shutil
import time
from pathlib import Path

import numpy as np

import checkout  # (this checkout's main/ as the package csp)
import page_cache
from csp import arguments
from csp import train_unsuper
from benchmark_training import SCRIPT, summary, steps_per_second
from csp.synthetic_data import write_synthetic_dataset
from csp.trainer import PRETRAINING, Trainer


def _memory():
    """{peak RSS, RssAnon, RssFile} of this process in GiB, from /proc/self/status."""
    with open("/proc/self/status") as handle:
        fields = dict(line.split(":", 1) for line in handle)
    return {key: int(fields[key].split()[0]) / 2 ** 20 for key in ("VmHWM", "RssAnon", "RssFile")}


def _write(out, num_train, feat_dim, feature_dtype):
    start = time.perf_counter()
    write_synthetic_dataset("yfcc", out, num_train=num_train, num_val=10000, num_test=0, feat_dim=feat_dim,
                            feature_dtype=feature_dtype)
    page_cache.sync(Path(out) / "yfcc")
    return {"seconds": time.perf_counter() - start, **_memory()}


def _train(out, storage, num_batches, rounds):
    os.environ["CSP_DATA_DIR"] = str(out)
    argv = train_unsuper.script_argv(SCRIPT) + [
        "--dataset", "yfcc", "--device", "cpu", "--train_sample_ratio", "1", "--feature_storage", storage,
        "--model_dir", str(Path(out) / "models")]
    features = Path(out) / "yfcc" / "features_inception"
    with Trainer(arguments.default_params(argv), console=False) as trainer:
        kind = type(trainer.train_feats).__name__
        speeds, cached = [], []
        for _ in range(rounds):
            page_cache.evict(features)
            cached.append(page_cache.resident(features))
            speeds.append(steps_per_second(trainer, PRETRAINING, 1024, num_batches))
    return {"features": kind, "samples/s": speeds, "cached": max(cached), **_memory()}


def _in_child(function, *args):
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(function, args)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder for the synthetic data (its yfcc/ is written there)")
    parser.add_argument("--num_train", type=int, default=2_000_000, help="training rows")
    parser.add_argument("--feat_dim", type=int, default=2048, help="image-feature width")
    parser.add_argument("--storages", nargs="+", default=["auto", "device"], help="--feature_storage values")
    parser.add_argument("--num_batches", type=int, default=100, help="timed pre-training steps at batch 1 024")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds, the file's pages evicted before each")
    parser.add_argument("--feature_dtype", default="float32", help="dtype of the feature file (float16)")
    parser.add_argument("--keep", action="store_true", help="keep the data folder")
    args = parser.parse_args(argv)
    print(checkout.context(), flush=True)
    out = Path(args.out)
    if (out / "yfcc").exists():
        raise ValueError(f"--out {out} already holds yfcc/; give an empty or new folder")
    gib = args.num_train * args.feat_dim * np.dtype(args.feature_dtype).itemsize / 2 ** 30
    print(f"writing {args.num_train} x {args.feat_dim} {args.feature_dtype} features ({gib:.1f} GiB) to "
          f"{out}/yfcc …", flush=True)
    try:
        written = _in_child(_write, out, args.num_train, args.feat_dim, args.feature_dtype)
        print(f"{'write and sync':20s} {written['seconds']:8.0f} s   peak RSS {written['VmHWM']:6.2f} GiB", flush=True)
        for storage in args.storages:
            trained = _in_child(_train, out, storage, args.num_batches, args.rounds)
            print(f"{'train ' + storage:20s} {summary(trained['samples/s'], 'samples/s')}, at most "
                  f"{100 * trained['cached']:.0f} % of the file cached before a round; peak RSS "
                  f"{trained['VmHWM']:6.2f} GiB (anonymous {trained['RssAnon']:.2f} GiB, file-backed "
                  f"{trained['RssFile']:.2f} GiB at the end; features: {trained['features']})", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(out / "yfcc", ignore_errors=True)
            shutil.rmtree(out / "models", ignore_errors=True)
    print(checkout.context(), flush=True)


if __name__ == "__main__":
    arguments.run_command(main)
