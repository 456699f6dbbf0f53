"""Speed and memory of the own-data path: image feature extraction, and loading a large table of observations.

    python benchmarks/benchmark_extraction.py [--num_images 10000] [--repeats 3] [--batch_sizes 32 128]
    python benchmarks/benchmark_extraction.py --num_images 0 --table_rows 2000000 --feature_dim 2048

Extraction: `--num_images` drawn JPEGs through `extract_features.extract`, the `--batch_sizes` taking turns; images/s,
median and range over the repeats. Table: `--table_rows` observations and a float32 feature file written in chunks,
loaded by `own_data.load_own_dataset` and read in random batches of 1024 rows. Each part prints its peak resident
memory.
"""
import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torchvision
from PIL import Image

import checkout  # noqa: F401  (this checkout's main/ as the package csp)
from csp import extract_features
from csp import own_data
from csp.arguments import default_params, run_command


def peak_rss_mib():
    """Peak resident set size of this process and of its finished children, MiB (Linux: ru_maxrss in KiB)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return own / 1024, children / 1024


def reset_peak():
    """Start a new peak (Linux ≥ 4.0: VmHWM is reset by writing 5 to /proc/self/clear_refs; elsewhere a no-op)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def memory_mib():
    """'peak P MiB (now: anonymous A, file-backed F)' from /proc/self/status: memory-mapped file pages are
    file-backed (the kernel may drop them), the rest is anonymous. ru_maxrss where /proc is missing."""
    try:
        fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    except OSError:
        return f"peak {peak_rss_mib()[0]:.0f} MiB"
    kib = {key: int(fields[key].split()[0]) for key in ("VmHWM", "RssAnon", "RssFile")}
    return (f"peak {kib['VmHWM'] / 1024:.0f} MiB (now: anonymous {kib['RssAnon'] / 1024:.0f} MiB, "
            f"file-backed {kib['RssFile'] / 1024:.0f} MiB)")


def draw_photos(folder, num, size, rng):
    """`num` JPEGs of `size` × `size` px (smooth random colour fields) and their table `photos.csv`."""
    coarse = rng.integers(0, 256, (num, 4, 4, 3), dtype=np.uint8)
    names = []
    for i in range(num):
        name = f"{i:06d}.jpg"
        Image.fromarray(coarse[i]).resize((size, size), Image.BILINEAR).save(folder / name, quality=90)
        names.append(name)
    pd.DataFrame({"image": names}).to_csv(folder / "photos.csv", index=False)
    return folder / "photos.csv"


def bench_extraction(args, folder):
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    table = draw_photos(folder, args.num_images, args.photo_size, rng)
    print(f"drew {args.num_images} JPEGs of {args.photo_size} px in {time.perf_counter() - start:.1f} s")
    weights = None
    if args.backbone != extract_features.LITE0:
        weights = folder / f"{args.backbone}.pth"
        torch.save(torchvision.models.get_model(args.backbone, weights=None).state_dict(), weights)
    speeds = {size: [] for size in args.batch_sizes}
    for repeat in range(args.repeats):
        for batch_size in args.batch_sizes:
            out = folder / f"feats_{repeat}_{batch_size}.npy"
            done = extract_features.extract(table, args.backbone, out, weights, image_size=args.image_size,
                                            batch_size=batch_size, num_workers=args.num_workers, device=args.device)
            speeds[batch_size].append(done["rows"] / done["seconds"])
            for path in [out, *extract_features.side_files(out).values()]:
                path.unlink()
    for batch_size, values in speeds.items():
        print(f"{args.backbone}, batch {batch_size}, {args.num_workers} workers: {np.median(values):.1f} images/s "
              f"(range {min(values):.1f}-{max(values):.1f}, {args.repeats} repeats)")
    own, children = peak_rss_mib()
    print(f"peak RSS after extraction: {own:.0f} MiB (decoding workers: {children:.0f} MiB)")


def write_table(folder, rows, dim, rng):
    """A table of `rows` observations (train first) and its (rows, dim) float32 features, written in chunks."""
    num_train = int(rows * 0.9)
    split = np.where(np.arange(rows) < num_train, "train", "val")
    table = pd.DataFrame({"image": [f"{i:08d}.jpg" for i in range(rows)],
                          "lon": rng.uniform(-180, 180, rows).round(4), "lat": rng.uniform(-90, 90, rows).round(4),
                          "label": rng.integers(0, 100, rows), "split": split})
    table.to_parquet(folder / "obs.parquet")
    features = np.lib.format.open_memmap(folder / "feats.npy", mode="w+", dtype=np.float32, shape=(rows, dim))
    chunk = max(1, (256 << 20) // (4 * dim))
    for start in range(0, rows, chunk):
        stop = min(start + chunk, rows)
        features[start:stop] = rng.standard_normal((stop - start, dim), dtype=np.float32)
    features.flush()
    del features
    return folder / "obs.parquet", folder / "feats.npy"


def bench_table(args, folder):
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    table, feats = write_table(folder, args.table_rows, args.feature_dim, rng)
    print(f"wrote {args.table_rows} rows and {args.table_rows * args.feature_dim * 4 / 2**30:.1f} GiB of features in "
          f"{time.perf_counter() - start:.0f} s")
    params = default_params(["--dataset", "custom", "--data_table", str(table), "--features", str(feats),
                             "--model_dir", str(folder / "run")])
    reset_peak()
    print(f"memory before loading: {memory_mib()}")
    start = time.perf_counter()
    data = own_data.load_own_dataset(params, "val", True, True, load_cnn_features_train=True)
    loaded = time.perf_counter() - start
    train = data.train.feats
    print(f"loaded the table: {len(data.train)} train, {len(data.val)} val rows in {loaded:.1f} s; training "
          f"features {type(train).__name__} {train.shape}; memory {memory_mib()}")
    feats = torch.from_numpy(np.asarray(train))  # as the trainer's _to_device on the CPU: no copy
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))
    start = time.perf_counter()
    total = 0.0
    for first in range(0, len(order), 1024):
        total += float(feats[order[first:first + 1024]].sum())
    print(f"one epoch of batches of 1024 rows gathered by index (a tensor over the memory map, as the trainer "
          f"holds it on the CPU): {time.perf_counter() - start:.1f} s; "
          f"memory {memory_mib()}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--num_images", type=int, default=10000, help="photos to extract (0: skip the extraction)")
    p.add_argument("--photo_size", type=int, default=256, help="side of the drawn photos, px")
    p.add_argument("--backbone", default=extract_features.LITE0)
    p.add_argument("--image_size", type=int, default=None, help="network input side (default: the preset's)")
    p.add_argument("--batch_sizes", type=int, nargs="+", default=[32, 128])
    p.add_argument("--num_workers", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="auto")
    p.add_argument("--table_rows", type=int, default=0, help="observations of the table part (0: skip it)")
    p.add_argument("--feature_dim", type=int, default=2048)
    p.add_argument("--dir", default=None, help="folder for the temporary files (default: the system's)")
    args = p.parse_args(argv)
    print(f"torch threads {torch.get_num_threads()}")
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        if args.num_images:
            images = Path(folder) / "images"
            images.mkdir()
            bench_extraction(args, images)
        if args.table_rows:
            bench_table(args, Path(folder))


if __name__ == "__main__":
    run_command(main)
