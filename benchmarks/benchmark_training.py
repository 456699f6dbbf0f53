"""Training and evaluation throughput of the iNat2018 run script's configuration, through the trainer's own code.

    python benchmarks/benchmark_training.py --data_dir DIR        # reuse DIR/inat_2018/, or write it there
    python benchmarks/benchmark_training.py --device cuda:0 --variants eager bf16 compile compile+bf16

On iNat2018-sized synthetic data (437 513 training rows, 8 142 classes, 2 048-d features; written and synced to the
disk first when missing): the set-up's seconds and the pre-training samples/s at batch 1 024 of trainers started
with the data's pages evicted from the page cache (cold: before the set-up and again before the timed steps) and
cached (warm), taking turns; then, in one trainer,
`Trainer.run_epoch` and the final evaluation: pre-training samples/s at batch 1 024 and 8 192, fine-tuning at
1 024, the evaluation's seconds. Median [min–max] over `--repeats`, the variants taking turns.
"""
import argparse
import gc
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

import checkout  # (this checkout's main/ as the package csp)
import page_cache
from csp import arguments
from csp import train_unsuper
from csp.synthetic_data import write_synthetic_dataset
from csp.trainer import FINETUNING, PRETRAINING, Trainer

SCRIPT = Path(__file__).resolve().parent.parent / "run-inat_2018-contsoftmax.sh"
INAT_SIZES = {"num_train": 437513, "num_val": 24426}
VARIANTS = {"eager": (False, False), "bf16": (False, True), "compile": (True, False), "compile+bf16": (True, True)}


def steps_per_second(trainer, phase, batch_size, num_batches):
    """Samples/s of the first `num_batches` optimisation steps of an epoch of `phase` at `batch_size` (after one
    warm-up step on its last rows; streamed features are read as in an epoch)."""
    trainer.params["batch_size"] = batch_size
    indices = trainer.epoch_indices(phase)
    if len(indices) < (num_batches + 1) * batch_size:
        indices = indices.repeat(-(-(num_batches + 1) * batch_size // len(indices)))
    trainer.run_epoch(phase, 0, indices[-batch_size:])
    timed = indices[:num_batches * batch_size]
    start = time.perf_counter()
    trainer.run_epoch(phase, 0, timed)  # ends with a logged loss: .item() waits for the device
    return len(timed) / (time.perf_counter() - start)


def evaluation_seconds(trainer):
    """Wall time of the final evaluation: image-only + image × prior, then location-only."""
    start = time.perf_counter()
    trainer.run_eval_final()
    trainer.run_eval_spa_enc_only(load_model=False)
    return time.perf_counter() - start


def summary(values, unit, digits=0):
    return (f"{statistics.median(values):9.{digits}f} [{min(values):.{digits}f}–{max(values):.{digits}f}] {unit} "
            f"({len(values)} runs)")


def _measure(trainer, measure):
    """(`measure()`, the peak GPU memory it allocated in GiB, or None on the CPU)."""
    cuda = trainer.device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(trainer.device)
    value = measure()
    return value, torch.cuda.max_memory_allocated(trainer.device) / 2 ** 30 if cuda else None


def _one_pass(trainer, args, evaluate):
    """[(figure, value, peak GPU GiB)]: pre-training and fine-tuning at batch 1 024, the final evaluation (when
    `evaluate`), pre-training at batch 8 192."""
    figures = [("pre-training, batch 1024", lambda: steps_per_second(trainer, PRETRAINING, 1024, args.num_batches)),
               ("fine-tuning, batch 1024", lambda: steps_per_second(trainer, FINETUNING, 1024, args.num_batches))]
    if evaluate:
        figures.append(("final evaluation", lambda: evaluation_seconds(trainer)))
    figures.append(("pre-training, batch 8192",
                    lambda: steps_per_second(trainer, PRETRAINING, 8192, args.num_large_batches)))
    return [(name, *_measure(trainer, measure)) for name, measure in figures]


def _run_variants(trainer, args):
    """{(variant, figure): ([values], peak GPU GiB)}, the variants taking turns in each repeat; a variant that fails is
    reported and left out."""
    steps, failed, figures = {}, set(), {}
    for _ in range(args.repeats):
        for number, variant in enumerate(args.variants):
            if variant in failed:
                continue
            trainer.params["compile"], trainer.params["bf16"] = VARIANTS[variant]
            try:
                trainer.step = steps[variant] = steps.get(variant) or trainer.build_step()
                measured = _one_pass(trainer, args, evaluate=number == 0)
            except Exception as err:  # the other variants still run
                print(f"{variant}: failed: {type(err).__name__}: {err}", flush=True)
                failed.add(variant)
                continue
            for name, value, peak in measured:
                print(f"  {variant}: {name} {value:.2f}", flush=True)
                values, most = figures.get((variant, name), ([], None))
                figures[(variant, name)] = (values + [value], peak if most is None else max(most, peak))
    return figures


def _describe(trainer):
    where = torch.cuda.get_device_name(trainer.device) if trainer.device.type == "cuda" else \
        f"{torch.get_num_threads()} threads"
    return (f"device {trainer.device} ({where}), torch {torch.__version__}; {len(trainer.train_classes)} training "
            f"rows, {trainer.params['num_classes']} classes, {trainer.train_feats.shape[1]}-d features "
            f"({type(trainer.train_feats).__name__}), {len(trainer.eval_classes)} evaluation rows")


def _start_ups(argv, folder, args):
    """{(cache, figure): [values]}: set-up seconds and pre-training samples/s at batch 1 024 of trainers built with
    the pages of `folder` evicted before the set-up and again before the timed steps (cold: what features that do
    not fit in memory meet; pages a trainer maps stay) or as they are (warm), `args.caches` taking turns
    `args.repeats` times."""
    figures = {}
    for _ in range(args.repeats):
        for cache in args.caches:
            if cache == "cold":
                page_cache.evict(folder)
            start = time.perf_counter()
            with Trainer(arguments.default_params(argv), console=False) as trainer:
                setup = time.perf_counter() - start
                if not figures:
                    print(_describe(trainer), flush=True)
                if cache == "cold":
                    page_cache.evict(folder)
                cached = page_cache.resident(folder)
                speed = steps_per_second(trainer, PRETRAINING, 1024, args.num_batches)
            del trainer
            gc.collect()  # its memory maps closed: the next eviction drops every page
            print(f"  {cache}: set-up {setup:.1f} s; {100 * cached:.0f} % of the data cached, pre-training "
                  f"{speed:.0f} samples/s", flush=True)
            for name, value in (("set-up", setup), ("pre-training, batch 1024", speed)):
                figures.setdefault((cache, name), []).append(value)
    return figures


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", help="folder holding inat_2018/ (written there if missing); "
                                           "default: a temporary folder, deleted afterwards")
    parser.add_argument("--device", default="auto", help="cpu, cuda:0 or auto")
    parser.add_argument("--num_batches", type=checkout.count, default=20, help="timed steps at batch 1 024")
    parser.add_argument("--num_large_batches", type=checkout.count, default=4, help="timed pre-training steps at batch 8 192")
    parser.add_argument("--repeats", type=checkout.count, default=1, help="repeats of every figure (alternated)")
    parser.add_argument("--variants", nargs="*", default=["eager"], choices=list(VARIANTS),
                        help="training-step variants: eager (float32), bf16 (autocast), compile, compile+bf16; "
                             "none: the start-ups alone")
    parser.add_argument("--feature_storage", default="auto", help="the run's --feature_storage")
    parser.add_argument("--num_train", type=int, default=INAT_SIZES["num_train"],
                        help="training rows of generated data")
    parser.add_argument("--num_val", type=int, default=INAT_SIZES["num_val"], help="validation rows of generated data")
    parser.add_argument("--feature_dtype", default="float32", choices=["float32", "float16"],
                        help="dtype of generated feature files")
    parser.add_argument("--caches", nargs="*", default=["cold", "warm"], choices=["cold", "warm"],
                        help="start-ups to time: with the data's pages evicted (cold) and cached (warm)")
    args = parser.parse_args(argv)
    print(checkout.context(), flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        data_dir = Path(args.data_dir or scratch)
        folder = data_dir / "inat_2018"
        if not folder.is_dir():
            print(f"writing synthetic iNat2018-style data ({args.num_train} training rows) to {data_dir} …",
                  flush=True)
            write_synthetic_dataset("inat_2018", data_dir, num_train=args.num_train, num_val=args.num_val,
                                    num_test=0, feature_dtype=args.feature_dtype)
            page_cache.sync(folder)  # no write-back left to slow the timed steps down
        os.environ["CSP_DATA_DIR"] = str(data_dir)
        argv = train_unsuper.script_argv(SCRIPT) + ["--device", args.device, "--model_dir", f"{scratch}/models",
                                                    "--feature_storage", args.feature_storage]
        start_ups, variants = _start_ups(argv, folder, args), {}
        if args.variants:
            with Trainer(arguments.default_params(argv), console=False) as trainer:
                if not start_ups:
                    print(_describe(trainer), flush=True)
                variants = _run_variants(trainer, args)
        for (cache, name), values in start_ups.items():
            unit, digits = ("s", 1) if name == "set-up" else ("samples/s", 0)
            print(f"{cache + ' start: ' + name:36s} {summary(values, unit, digits)}", flush=True)
        for (variant, name), (values, peak) in variants.items():
            unit, digits = ("s", 2) if name == "final evaluation" else ("samples/s", 0)
            print(f"{variant + ': ' + name:36s} {summary(values, unit, digits)}"
                  + (f", peak GPU memory {peak:.2f} GiB" if peak is not None else ""), flush=True)
        print(checkout.context(), flush=True)


if __name__ == "__main__":
    arguments.run_command(main)
