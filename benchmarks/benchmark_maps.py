"""Speed of the class map (`plots.plot_class_map`) for a model of the iNat script's size.

    python benchmarks/benchmark_maps.py [--device cpu] [--repeats 3] [--column_loop]

An untrained `gridcell` encoder with the iNat2018 run script's flags and 8142 classes: seconds for the prediction
(`dense_prediction`) and the whole PNG, best of `--repeats`; `--column_loop` also times one forward pass per grid
column, the ocean included (the scheme of CSP's code, about 58 s per map on a 2-core CPU).
"""
import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import checkout  # noqa: F401  (this checkout's main/ as the package csp)
from csp import land_mask
from csp import plots
from csp.arguments import default_params, resolve_device, run_command
from csp.models import build_model

INAT_SCRIPT_ENCODER = ["--spa_enc_type", "gridcell", "--frequency_num", "32", "--max_radius", "360",
                       "--min_radius", "0.1", "--num_hidden_layer", "1", "--hidden_dim", "512",
                       "--spa_f_act", "leakyrelu"]
NUM_CLASSES = 8142
CLASS_ID = 3731


def best_time(function, repeats, device):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return min(times)


def column_loop(model, mask):
    """One forward pass of H points per grid column, the ocean included."""
    lon, lat = land_mask.grid_lonlat(mask.shape)
    device = plots.model_device(model)
    lat_column = torch.as_tensor(lat, dtype=torch.float32, device=device)
    with torch.inference_mode():
        for value in lon:
            coords = torch.stack((torch.full_like(lat_column, float(value)), lat_column), dim=1)
            model(coords, class_of_interest=CLASS_ID)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--device", default="cpu", help="torch device of the model: cpu, cuda:0, auto")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats of each measurement")
    p.add_argument("--batch_size", type=int, default=None, help="points per forward pass (None: plots.run_batched's "
                                                                  "for the device)")
    p.add_argument("--column_loop", action="store_true", help="also time the original's column-by-column scheme")
    args = p.parse_args(argv)
    device = resolve_device(args.device)
    torch.manual_seed(0)
    model = build_model(default_params(INAT_SCRIPT_ENCODER), NUM_CLASSES, 1).to(device).eval()
    mask, source = land_mask.load_land_mask()
    num_land = int(np.count_nonzero(mask))
    print(f"device {device}, torch threads {torch.get_num_threads()}, mask {source}: {num_land} land points")
    predict = best_time(lambda: plots.dense_prediction(model, CLASS_ID, mask, args.batch_size), args.repeats,
                        device)
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "map.png"
        figure = best_time(lambda: plots.plot_class_map(model, CLASS_ID, out, mask, args.batch_size), args.repeats,
                           device)
    print(f"prediction {predict:.2f} s ({num_land / predict:,.0f} points/s), whole figure {figure:.2f} s; "
          f"original 58 s per map: {58 / predict:.1f}x (prediction), {58 / figure:.1f}x (figure)")
    if args.column_loop:
        loop = best_time(lambda: column_loop(model, mask), 1, device)
        print(f"original scheme with this model: {loop:.2f} s ({mask.size / loop:,.0f} points/s); "
              f"batched land-only prediction is {loop / predict:.1f}x faster")


if __name__ == "__main__":
    run_command(main)
