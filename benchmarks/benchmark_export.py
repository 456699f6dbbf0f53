"""Throughput and peak memory of `export.py --to geotiff` (or parquet) over a grid, one process per run.

    python benchmarks/benchmark_export.py --checkpoint CK --class NAME --out_dir /tmp/export-bench \
        [--resolution 0.05] [--values prior] [--to geotiff] [--repeats 3]

Each run is `python main/export.py` in a fresh process over the whole globe at `--resolution` degrees (0.05:
7 200 x 3 600 = 25.9 M cells); printed per run: wall seconds, cells per second, the process's peak resident memory
(ru_maxrss), the file's size; then the median and range, with the load average before and after.
"""
import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import checkout  # (this checkout's main/ as the package csp; the count type)

ROOT = Path(__file__).resolve().parents[1]


def one_run(argv):
    """(wall seconds, peak resident MiB) of `argv` run as a child process."""
    start = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(argv)} failed")
    return seconds, usage.ru_maxrss / 1024


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--class", dest="class_name", help="--values prior: the class")
    p.add_argument("--values", default="prior", choices=("prior", "embedding", "pca"))
    p.add_argument("--to", default="geotiff", choices=("geotiff", "parquet"))
    p.add_argument("--resolution", type=float, default=0.05)
    p.add_argument("--out_dir", type=Path, required=True)
    p.add_argument("--repeats", type=checkout.count, default=3)
    args = p.parse_args(argv)
    out = args.out_dir / f"map.{'tif' if args.to == 'geotiff' else 'parquet'}"
    command = [sys.executable, str(ROOT / "main" / "export.py"), "--checkpoint", args.checkpoint, "--to", args.to,
               "--values", args.values, "--resolution", str(args.resolution), "--out", str(out), "--overwrite"]
    command += ["--class", args.class_name] if args.class_name else []
    cells = round(360 / args.resolution) * round(180 / args.resolution)
    load_before = os.getloadavg()[0]
    runs = []
    for repeat in range(args.repeats):
        seconds, peak = one_run(command)
        runs.append((seconds, peak))
        print(f"run {repeat + 1}: {seconds:.1f} s, {cells / seconds:,.0f} cells/s, peak memory {peak:,.0f} MiB, "
              f"{out.stat().st_size / 2 ** 20:,.1f} MiB file, load {os.getloadavg()[0]:.1f}", flush=True)
    rates = [cells / seconds for seconds, _ in runs]
    peaks = [peak for _, peak in runs]
    print(f"{args.to} {args.values} over the globe at {args.resolution:g} degrees ({cells:,} cells): median "
          f"{statistics.median(rates):,.0f} cells/s (range {min(rates):,.0f}-{max(rates):,.0f}), peak memory median "
          f"{statistics.median(peaks):,.0f} MiB (range {min(peaks):,.0f}-{max(peaks):,.0f}), {args.repeats} runs; "
          f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after; {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
