"""Forward and forward + backward throughput (points/s) of every location encoder.

    python benchmarks/benchmark_encoders.py --device auto
    python benchmarks/benchmark_encoders.py --encoders gridcell sphere --batch_sizes 1024 --rounds 7

The iNat script's flags (F = 32 scales, 0.1 to 360, one hidden layer of 512, D = 256) plus an encoder's own
(`ENCODER_FLAGS`). "forward": eval mode without gradients; "forward+backward": a training step's passes of the mean
embedding, no class head. The encoders take turns round after round; median and range over the rounds.
"""
import argparse
import statistics
import time

import numpy as np
import torch

import checkout  # noqa: F401  (this checkout's main/ as the package csp)
from csp.arguments import default_params, resolve_device, run_command
from csp.encoders import SPATIAL_ENCODERS
from csp.models import build_model

INAT_FLAGS = ["--frequency_num", "32", "--min_radius", "0.1", "--max_radius", "360", "--num_hidden_layer", "1",
              "--hidden_dim", "512", "--num_filts", "256", "--spa_f_act", "leakyrelu"]
ENCODER_FLAGS = {"tile_ffn": ["--min_radius", "1"]}
# "name+siren": the encoder with --spa_enc_net siren
ALL_ENCODERS = list(SPATIAL_ENCODERS) + ["geo_net", "spherical_harmonics+siren"]


def _synchronise(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build(name, device):
    """The model of encoder `name` ("x+siren": x with the SIREN network)."""
    encoder, _, network = name.partition("+")
    flags = INAT_FLAGS + ["--spa_enc_type", encoder] + ENCODER_FLAGS.get(encoder, [])
    params = default_params(flags + (["--spa_enc_net", network] if network else []))
    anchors = np.random.default_rng(0).uniform(-90, 90, (params["num_rbf_anchor_pts"], 2))
    torch.manual_seed(0)
    return build_model(params, 1, 1, anchors=anchors).to(device)


def random_points(batch_size, device):
    generator = torch.Generator(device=device).manual_seed(0)
    coords = torch.rand(batch_size, 2, device=device, generator=generator) * 2.0 - 1.0
    return coords * torch.tensor([180.0, 90.0], device=device)


def forward_rate(model, coords, repeats):
    """Points per second of the embedding in eval mode without gradients."""
    model.eval()
    with torch.no_grad():
        start = time.perf_counter()
        for _ in range(repeats):
            model(coords, return_feats=True)
        _synchronise(coords.device)
    return len(coords) * repeats / (time.perf_counter() - start)


def backward_rate(model, coords, repeats):
    """Points per second of a training step's forward and backward pass (train mode, gradients cleared first)."""
    model.train()
    start = time.perf_counter()
    for _ in range(repeats):
        model.zero_grad(set_to_none=True)
        model(coords, return_feats=True).mean().backward()
    _synchronise(coords.device)
    return len(coords) * repeats / (time.perf_counter() - start)


def _summary(rates):
    return f"{statistics.median(rates):13,.0f} ({min(rates):,.0f}–{max(rates):,.0f})"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="cpu, cuda:0, ... or auto (first GPU if any)")
    parser.add_argument("--encoders", nargs="+", default=ALL_ENCODERS,
                        help="--spa_enc_type values (name+siren: with --spa_enc_net siren); default all")
    parser.add_argument("--batch_sizes", nargs="+", type=int, default=[1024, 16384])
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls of each kind before timing")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per round")
    parser.add_argument("--rounds", type=int, default=5, help="alternated rounds over the encoders")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    args = parser.parse_args(argv)
    unknown = [name for name in args.encoders if name.partition("+")[0] not in ALL_ENCODERS]
    if unknown:
        raise ValueError(f"--encoders {' '.join(unknown)}: not a location encoder; choose from "
                         f"{', '.join(ALL_ENCODERS)}")
    device = resolve_device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    print(f"device {device}" + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else
                                f" ({torch.get_num_threads()} threads)") + f", torch {torch.__version__}; "
          f"points/s, median (range) of {args.rounds} rounds")
    models = {name: build(name, device) for name in args.encoders}
    for batch_size in args.batch_sizes:
        coords = random_points(batch_size, device)
        for model in models.values():
            forward_rate(model, coords, args.warmup)
            backward_rate(model, coords, args.warmup)
        rates = {name: ([], []) for name in models}
        for _ in range(args.rounds):
            for name, model in models.items():
                rates[name][0].append(forward_rate(model, coords, args.repeats))
                rates[name][1].append(backward_rate(model, coords, args.repeats))
        for name, (forward, backward) in rates.items():
            print(f"{name:26s} batch {batch_size:6d}: forward {_summary(forward)}  "
                  f"forward+backward {_summary(backward)}")


if __name__ == "__main__":
    run_command(main)
