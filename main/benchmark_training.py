"""Training and evaluation throughput of the iNat2018 run script's configuration, through the trainer's own code.

    python benchmark_training.py --data_dir /work/synth_inat          # reuse DIR/inat_2018/ (synthetic_data.py)
    python benchmark_training.py                                      # generate iNat2018-sized data in a temp dir

Builds a `Trainer` with the flags of `../run-inat_2018-contsoftmax.sh` (437 513 training rows, 8 142 classes,
2 048-d features, 24 426 validation rows when the data are iNat2018-sized) and prints: pre-training samples/s and
fine-tuning samples/s at the script's batch size (1 024), the wall time of the final evaluation (image-only,
image × prior and location-only), and pre-training samples/s at batch 8 192. Each figure times `Trainer.run_epoch`
(after one warm-up step) or the evaluation methods: the code a run executes.
"""
import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

import arguments
import train_unsuper
from synthetic_data import write_synthetic_dataset
from trainer import FINETUNING, PRETRAINING, Trainer

SCRIPT = Path(__file__).resolve().parent.parent / "run-inat_2018-contsoftmax.sh"
INAT_SIZES = {"num_train": 437513, "num_val": 24426, "num_test": 0}


def steps_per_second(trainer, phase, batch_size, num_batches):
    """Samples/s of `num_batches` optimisation steps of `phase` at `batch_size` (after one warm-up step)."""
    trainer.params["batch_size"] = batch_size
    indices = trainer.epoch_indices(phase)
    if len(indices) < (num_batches + 1) * batch_size:
        indices = indices.repeat(-(-(num_batches + 1) * batch_size // len(indices)))
    trainer.run_epoch(phase, 0, indices[:batch_size])
    timed = indices[batch_size:(num_batches + 1) * batch_size]
    start = time.perf_counter()
    trainer.run_epoch(phase, 0, timed)  # ends with a logged loss: .item() waits for the device
    return len(timed) / (time.perf_counter() - start)


def evaluation_seconds(trainer):
    """Wall time of the final evaluation: image-only + image × prior, then location-only."""
    start = time.perf_counter()
    trainer.run_eval_final()
    trainer.run_eval_spa_enc_only(load_model=False)
    return time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", help="folder holding inat_2018/ (written there if missing); "
                                           "default: a temporary folder, deleted afterwards")
    parser.add_argument("--device", default="auto", help="cpu, cuda:0 or auto")
    parser.add_argument("--num_batches", type=int, default=20, help="timed steps at batch 1 024")
    parser.add_argument("--num_large_batches", type=int, default=4, help="timed pre-training steps at batch 8 192")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        data_dir = Path(args.data_dir or scratch)
        if not (data_dir / "inat_2018").is_dir():
            print(f"writing iNat2018-sized synthetic data to {data_dir} …", flush=True)
            write_synthetic_dataset("inat_2018", data_dir, **INAT_SIZES)
        os.environ["CSP_DATA_DIR"] = str(data_dir)
        argv = train_unsuper.script_argv(SCRIPT) + ["--device", args.device, "--model_dir", f"{scratch}/models"]
        start = time.perf_counter()
        with Trainer(arguments.default_params(argv), console=False) as trainer:
            setup = time.perf_counter() - start
            print(f"device {trainer.device}, {torch.get_num_threads()} threads; {len(trainer.train_classes)} "
                  f"training rows, {trainer.params['num_classes']} classes, {trainer.train_feats.shape[1]}-d "
                  f"features, {len(trainer.eval_classes)} evaluation rows; set-up {setup:.1f} s", flush=True)
            figures = [
                ("pre-training, batch 1024", steps_per_second(trainer, PRETRAINING, 1024, args.num_batches)),
                ("fine-tuning, batch 1024", steps_per_second(trainer, FINETUNING, 1024, args.num_batches)),
            ]
            for name, value in figures:
                print(f"{name:28s} {value:9.0f} samples/s", flush=True)
            print(f"{'final evaluation':28s} {evaluation_seconds(trainer):9.2f} s "
                  f"(image-only + image x prior on {len(trainer.eval_classes)} rows, location-only on "
                  f"{len(trainer.val_classes)})", flush=True)
            large = steps_per_second(trainer, PRETRAINING, 8192, args.num_large_batches)
            print(f"{'pre-training, batch 8192':28s} {large:9.0f} samples/s", flush=True)


if __name__ == "__main__":
    arguments.run_command(main)
