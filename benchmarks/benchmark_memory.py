"""Speed and peak memory of training on image features larger than the memory one wants to spend on them.

    python benchmarks/benchmark_memory.py --out /tmp/big                    # 2 000 000 × 2 048 float32: 15.3 GiB
    python benchmarks/benchmark_memory.py --out /tmp/big --num_train 20000  # a quick look
    python benchmarks/benchmark_memory.py --out DIR --dataset inat_2018 --storages auto   # DIR/inat_2018/ as it is

Writes a synthetic dataset (yfcc, or inat_2018) and syncs it to the disk, or uses the one in `--out`; then for each
`--storages` value, in a process of its own, builds the iNat2018 run script's `Trainer` and times `--num_batches`
pre-training steps at batch 1 024 `--rounds` times, the data's pages evicted from the page cache before each round
(as if the file were larger than the memory); streamed features are also timed read alone, without training.
Prints median [min–max], the share of the data cached before a round, and the peak and anonymous resident memory.
The feature file takes num_train × feat_dim × 4 bytes of disk (2 with float16).
"""
import argparse
import multiprocessing
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

import checkout  # (this checkout's main/ as the package csp)
import page_cache
from csp import arguments
from csp import feature_store
from csp import train_unsuper
from benchmark_training import SCRIPT, summary, steps_per_second
from csp.synthetic_data import write_synthetic_dataset
from csp.trainer import PRETRAINING, Trainer

DATASET_FLAGS = {"yfcc": ["--dataset", "yfcc", "--train_sample_ratio", "1"], "inat_2018": []}


def _memory():
    """{peak RSS, RssAnon, RssFile} of this process in GiB, from /proc/self/status."""
    with open("/proc/self/status") as handle:
        fields = dict(line.split(":", 1) for line in handle)
    return {key: int(fields[key].split()[0]) / 2 ** 20 for key in ("VmHWM", "RssAnon", "RssFile")}


def _write(out, dataset, num_train, feat_dim, feature_dtype):
    start = time.perf_counter()
    write_synthetic_dataset(dataset, out, num_train=num_train, num_val=10000, num_test=0, feat_dim=feat_dim,
                            feature_dtype=feature_dtype)
    page_cache.sync(Path(out) / dataset)
    return {"seconds": time.perf_counter() - start, **_memory()}


def _read_alone(trainer, num_batches):
    """Rows/s of reading the features of the first `num_batches` batches of 1 024 of an epoch, without training."""
    trainer.params["batch_size"] = 1024
    order = trainer.epoch_indices(PRETRAINING)[:num_batches * 1024]
    start = time.perf_counter()
    for _ in feature_store.batches(trainer.train_feats, order, 1024):
        pass
    return len(order) / (time.perf_counter() - start)


def _train(out, dataset, storage, num_batches, rounds, model_dir):
    os.environ["CSP_DATA_DIR"] = str(out)
    argv = train_unsuper.script_argv(SCRIPT) + DATASET_FLAGS[dataset] + [
        "--device", "cpu", "--feature_storage", storage, "--model_dir", model_dir]
    folder = Path(out) / dataset
    with Trainer(arguments.default_params(argv), console=False) as trainer:
        streamed = isinstance(trainer.train_feats, feature_store.StreamedFeatures)
        figures = {"samples/s": [], "cached": [], "read alone": []}
        for _ in range(rounds):
            page_cache.evict(folder)
            figures["cached"].append(page_cache.resident(folder))
            figures["samples/s"].append(steps_per_second(trainer, PRETRAINING, 1024, num_batches))
            if streamed:
                page_cache.evict(folder)
                figures["read alone"].append(_read_alone(trainer, num_batches))
        kind = type(trainer.train_feats).__name__
    return {"features": kind, **figures, **_memory()}


def _in_child(function, *args):
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(function, args)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True,
                        help="folder for the synthetic data: its <dataset>/ is written there and deleted at the end "
                             "(unless --keep), or, when it is there already, used as it is and kept")
    parser.add_argument("--dataset", default="yfcc", choices=list(DATASET_FLAGS),
                        help="yfcc (every training row in each epoch) or inat_2018 (the class-balanced sampler's "
                             "draw, the iNat script's flags unchanged)")
    parser.add_argument("--num_train", type=int, default=2_000_000, help="training rows")
    parser.add_argument("--feat_dim", type=int, default=2048, help="image-feature width")
    parser.add_argument("--storages", nargs="+", default=["auto", "device"], help="--feature_storage values")
    parser.add_argument("--num_batches", type=checkout.count, default=100, help="timed pre-training steps at batch 1 024")
    parser.add_argument("--rounds", type=checkout.count, default=3, help="timed rounds, the data's pages evicted before each")
    parser.add_argument("--feature_dtype", default="float32", choices=["float32", "float16"], help="dtype of the feature file (float16)")
    parser.add_argument("--keep", action="store_true", help="keep the data folder written")
    args = parser.parse_args(argv)
    print(checkout.context(), flush=True)
    out = Path(args.out)
    folder = out / args.dataset
    written = not folder.exists()
    try:
        if written:
            gib = args.num_train * args.feat_dim * np.dtype(args.feature_dtype).itemsize / 2 ** 30
            print(f"writing {args.num_train} x {args.feat_dim} {args.feature_dtype} features ({gib:.1f} GiB) to "
                  f"{folder} …", flush=True)
            done = _in_child(_write, out, args.dataset, args.num_train, args.feat_dim, args.feature_dtype)
            print(f"{'write and sync':20s} {done['seconds']:8.0f} s   peak RSS {done['VmHWM']:6.2f} GiB", flush=True)
        else:
            print(f"using {folder} as it is", flush=True)
        for storage in args.storages:
            with tempfile.TemporaryDirectory() as model_dir:
                trained = _in_child(_train, out, args.dataset, storage, args.num_batches, args.rounds, model_dir)
            read = f", reading alone {summary(trained['read alone'], 'rows/s')}" if trained["read alone"] else ""
            print(f"{'train ' + storage:20s} {summary(trained['samples/s'], 'samples/s')}{read}; at most "
                  f"{100 * max(trained['cached']):.0f} % of the data cached before a round; peak RSS "
                  f"{trained['VmHWM']:6.2f} GiB (anonymous {trained['RssAnon']:.2f} GiB, file-backed "
                  f"{trained['RssFile']:.2f} GiB at the end; features: {trained['features']})", flush=True)
    finally:
        if written and not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    print(checkout.context(), flush=True)


if __name__ == "__main__":
    arguments.run_command(main)
