"""Forward throughput (points/s) of the gridcell and theory location encoders.

Flags of the paper's iNat script: F = 32 scales from 0.1 to 360, one hidden layer of 512, D = 256, leaky ReLU.
Each encoder maps random (lon, lat) degrees to embeddings in eval mode without gradients: warm-up calls, then
timed repeats (the GPU is synchronised before the clock is read). Run from inside `main/`:

    python benchmark_encoders.py --device auto
"""
import argparse
import time

import torch

from arguments import default_params, resolve_device, run_command
from models import build_model

INAT_FLAGS = ["--frequency_num", "32", "--min_radius", "0.1", "--max_radius", "360", "--num_hidden_layer", "1",
              "--hidden_dim", "512", "--num_filts", "256", "--spa_f_act", "leakyrelu"]


def _synchronise(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def points_per_second(model, batch_size, device, warmup, repeats):
    """Embeddings per second of `model` on batches of `batch_size` random (lon, lat) points."""
    generator = torch.Generator(device=device).manual_seed(0)
    coords = torch.rand(batch_size, 2, device=device, generator=generator) * 2.0 - 1.0
    coords = coords * torch.tensor([180.0, 90.0], device=device)
    with torch.no_grad():
        for _ in range(warmup):
            model(coords, return_feats=True)
        _synchronise(device)
        start = time.perf_counter()
        for _ in range(repeats):
            model(coords, return_feats=True)
        _synchronise(device)
    return batch_size * repeats / (time.perf_counter() - start)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="cpu, cuda:0, ... or auto (first GPU if any)")
    parser.add_argument("--encoders", nargs="+", default=["gridcell", "theory"], help="--spa_enc_type values")
    parser.add_argument("--batch_sizes", nargs="+", type=int, default=[1024, 65536])
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls before timing")
    parser.add_argument("--repeats", type=int, default=10, help="timed calls")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    print(f"device {device}" + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else
                                f" ({torch.get_num_threads()} threads)") + f", torch {torch.__version__}")
    for name in args.encoders:
        torch.manual_seed(0)
        model = build_model(default_params(INAT_FLAGS + ["--spa_enc_type", name]), 8142, 1).to(device).eval()
        for batch_size in args.batch_sizes:
            rate = points_per_second(model, batch_size, device, args.warmup, args.repeats)
            print(f"{name:10s} batch {batch_size:6d}: {rate:14,.0f} points/s")


if __name__ == "__main__":
    run_command(main)
