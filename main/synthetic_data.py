"""Synthetic data in the on-disk layout of the CSP bundle, at any scale, for tests and benchmarks.

    python synthetic_data.py --dataset inat_2018 --out DIR --num_train 437513 --num_val 24426

Each class has a home on the sphere; image features mix its prototype, a coarse location signal and noise; the
classifier confuses look-alike classes that live elsewhere, so a location prior helps. Use `CSP_DATA_DIR=DIR`.
"""
import argparse
import json
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import sparse
from tqdm import tqdm

if not __package__:  # run as a script (`python synthetic_data.py`): its folder is imported as the package csp
    __package__ = __import__("as_package").PACKAGE
from . import datasets
from .arguments import run_command

logger = logging.getLogger(__name__)

LOOKALIKES = 5
FULL_DELTA, FEWSHOT_DELTA = 2.0, 1.0
FEATURE_NOISE, LOCATION_SIGNAL = 2.0, 0.5
CHUNK_ROWS = 16384
FEATURE_DTYPES = ("float32", "float16")


class _World:

    def __init__(self, num_classes, feat_dim, rng):
        self.num_classes = num_classes
        homes = rng.standard_normal((num_classes, 3))
        self.homes = homes / np.linalg.norm(homes, axis=1, keepdims=True)
        self.spread = np.deg2rad(rng.uniform(3, 25, num_classes))
        self.popularity = rng.permutation(num_classes)
        size = min(LOOKALIKES, num_classes)
        offsets = 1 + rng.choice(num_classes - 1, size - 1, replace=False) if size > 1 else np.zeros(0, int)
        self.lookalikes = (np.arange(num_classes)[:, None] + np.concatenate([[0], offsets])) % num_classes
        self.prototypes = rng.standard_normal((num_classes, feat_dim), dtype=np.float32)
        self.loc_weights = LOCATION_SIGNAL * rng.standard_normal((3, feat_dim), dtype=np.float32)

    def draw_classes(self, num, rng, long_tailed):
        """Class of each entry: long-tailed (train) or even (evaluation); every class once if num allows."""
        if not long_tailed:
            return rng.permutation(np.arange(num) % self.num_classes)
        base = np.arange(min(num, self.num_classes))
        weights = (1.0 + self.popularity) ** -0.7
        rest = rng.choice(self.num_classes, num - len(base), p=weights / weights.sum())
        return rng.permutation(np.concatenate([base, rest]))

    def draw_xyz(self, classes, rng):
        xyz = self.homes[classes] + self.spread[classes, None] * rng.standard_normal((len(classes), 3))
        return xyz / np.linalg.norm(xyz, axis=1, keepdims=True)

    def predictions(self, classes, delta, rng):
        """(column ids, probabilities), (N, k) each: the classifier over each entry's look-alike set."""
        cols = self.lookalikes[classes]
        logits = rng.gumbel(size=cols.shape)
        logits[:, 0] += delta
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        return cols, (probs / probs.sum(axis=1, keepdims=True)).astype(np.float32)


def _lonlat(xyz):
    lon = np.degrees(np.arctan2(xyz[:, 1], xyz[:, 0]))
    lat = np.degrees(np.arcsin(np.clip(xyz[:, 2], -1, 1)))
    return np.round(lon, 5), np.round(lat, 5)


def _with_nulls(values, null):
    out = np.asarray(values, dtype=object)
    out[null] = None
    return out.tolist()


def _write_json(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        f.write(json.dumps(data))


def _write_features(path, world, classes, xyz, rng, dtype):
    """(N, F) `.npy` of `dtype` written chunk by chunk (drawn in float32)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    num, dim = len(classes), world.prototypes.shape[1]
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": (num, dim)}
    buf = np.empty((min(CHUNK_ROWS, max(num, 1)), dim), np.float32)
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        for start in tqdm(range(0, num, CHUNK_ROWS), desc=path.name, disable=num < 20 * CHUNK_ROWS):
            stop = min(start + CHUNK_ROWS, num)
            block = buf[: stop - start]
            rng.standard_normal(out=block, dtype=np.float32)
            block *= FEATURE_NOISE
            block += world.prototypes[classes[start:stop]]
            block += xyz[start:stop].astype(np.float32) @ world.loc_weights
            block.astype(dtype, copy=False).tofile(f)


def _write_predictions(path, world, classes, delta, rng):
    path.parent.mkdir(parents=True, exist_ok=True)
    cols, probs = world.predictions(classes, delta, rng)
    num, k = cols.shape
    if path.suffix == ".npz":
        matrix = sparse.csr_matrix((probs.ravel(), cols.ravel(), np.arange(0, num * k + 1, k)),
                                   shape=(num, world.num_classes))
        matrix.sort_indices()
        sparse.save_npz(path, matrix)
        return
    floor = 0.01 / world.num_classes
    dense = np.full((num, world.num_classes), floor, np.float32)
    np.put_along_axis(dense, cols, probs * 0.99 + floor, axis=1)
    np.save(path, dense)


def _link(root, target, name):
    """`name` as a relative symlink to `target` (both relative to `root`)."""
    link = root / name
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        link.unlink()
    os.symlink(os.path.relpath(root / target, link.parent), link)


class _Split:
    """One split's draw: classes, true positions, and the metadata as written (with nulls)."""

    def __init__(self, world, num, rng, long_tailed, invalid_frac):
        self.classes = world.draw_classes(num, rng, long_tailed)
        self.xyz = world.draw_xyz(self.classes, rng)
        self.lon, self.lat = _lonlat(self.xyz)
        self.no_loc = rng.random(num) < invalid_frac
        self.no_user = rng.random(num) < invalid_frac / 2
        self.users = rng.integers(0, max(1, num // 20), num)
        self.dates = np.round(rng.random(num), 5)
        self.no_date = rng.random(num) < invalid_frac / 2


def _inat_style_files(dataset, root, split_name, split, first_id, rng):
    num = len(split.classes)
    ids = np.arange(first_id, first_id + num)
    loc_name, ann_name = datasets.annotation_files(dataset, split_name)
    images = [{"id": int(i), "file_name": f"{split_name}/{c}/{i}.jpg", "width": 800, "height": 600}
              for i, c in zip(ids.tolist(), split.classes.tolist())]
    order = rng.permutation(num)
    annotations = [{"id": int(i), "image_id": int(i), "category_id": int(c)}
                   for i, c in zip(ids[order].tolist(), split.classes[order].tolist())]
    _write_json(root / ann_name, {"images": images, "annotations": annotations})
    del images, annotations
    lon = _with_nulls(split.lon[order], split.no_loc[order])
    lat = _with_nulls(split.lat[order], split.no_loc[order])
    users = _with_nulls(split.users[order], split.no_user[order])
    dates = _with_nulls(split.dates[order], split.no_date[order])
    _write_json(root / loc_name, [{"id": i, "lon": a, "lat": b, "user_id": u, "date_c": d}
                                  for i, a, b, u, d in zip(ids[order].tolist(), lon, lat, users, dates)])
    if split_name == "test":
        usage = np.where(rng.random(num) < 0.5, "Private", "Public")
        pd.DataFrame({"id": ids, "predicted": split.classes, "usage": usage}).to_csv(
            root / datasets.kaggle_file(dataset), index=False)
    return first_id + num


def _bird_entries(split, rng):
    """(entries, mask of entries with valid_image) of a bird split."""
    num = len(split.classes)
    valid_image = rng.random(num) >= 0.03
    orig_no_loc = split.no_loc | (rng.random(num) < 0.5)

    def meta(no_loc):
        return [{"lon": a, "lat": b, "user_id": u, "date": d} for a, b, u, d in zip(
            _with_nulls(split.lon, no_loc), _with_nulls(split.lat, no_loc),
            _with_nulls(split.users, split.no_user), _with_nulls(split.dates, split.no_date))]

    entries = [{"valid_image": bool(v), "im_path": f"{i}.jpg", "class_id": int(c), "orig_meta": o, "ebird_meta": e}
               for i, (v, c, o, e) in enumerate(zip(valid_image, split.classes, meta(orig_no_loc),
                                                    meta(split.no_loc)))]
    return entries, valid_image


def write_synthetic_dataset(dataset, out_dir, num_train=2000, num_val=500, num_test=None, num_classes=None,
                            feat_dim=2048, seed=0, invalid_frac=0.02, fewshot_ratios=(0.05,),
                            cnn_model="inception_v3", feature_dtype="float32"):
    """Write `out_dir/<dataset>/` in the bundle's layout; returns that folder. num_test defaults to num_val (fmow has
    none); invalid_frac: share of entries without a location; feature_dtype: float32 or float16."""
    if dataset not in datasets.DATASET_INFO:
        raise ValueError(f"--dataset must be one of {', '.join(datasets.DATASET_INFO)}, got {dataset!r}")
    num_classes = num_classes or datasets.DATASET_INFO[dataset][0]
    if num_train < 1 or num_val < 1 or num_classes < 1 or feat_dim < 1:
        raise ValueError("--num_train, --num_val, --num_classes and --feat_dim must be at least 1")
    if feature_dtype not in FEATURE_DTYPES:
        raise ValueError(f"--feature_dtype must be one of {', '.join(FEATURE_DTYPES)}, got {feature_dtype!r}")
    num_test = num_val if num_test is None else num_test
    rng = np.random.default_rng(seed)
    world = _World(num_classes, feat_dim, rng)
    root = Path(out_dir) / dataset
    root.mkdir(parents=True, exist_ok=True)
    sizes = {"train": num_train, "val": num_val}
    if num_test and dataset != "fmow":
        sizes["test"] = num_test
    invalid = 0.0 if dataset == "yfcc" else invalid_frac
    draws = {name: _Split(world, num, rng, name == "train", invalid) for name, num in sizes.items()}
    names = [f"class_{c:04d}" for c in range(num_classes)]

    if dataset in datasets.INAT_STYLE:
        if dataset == "fmow":
            _write_json(root / datasets.category_file(dataset), {n: c for c, n in enumerate(names)})
        else:
            _write_json(root / datasets.category_file(dataset),
                        [{"id": c, "name": n, "supercategory": "synthetic"} for c, n in enumerate(names)])
        first_id = 0
        for name, split in draws.items():
            first_id = _inat_style_files(dataset, root, name, split, first_id, rng)
        rows = {name: np.ones(len(split.classes), bool) for name, split in draws.items()}
    elif dataset in datasets.BIRD_FILES:
        bird = {"classes": names, "info": f"synthetic {dataset}, seed {seed}"}
        rows = {}
        for name, split in draws.items():
            bird[name], rows[name] = _bird_entries(split, rng)
        _write_json(root / datasets.BIRD_FILES[dataset], bird)
        del bird
    else:
        pd.DataFrame({"id": np.arange(num_classes), "name": names}).to_csv(root / datasets.YFCC_CLASS_FILE,
                                                                          index=False)
        pd.concat([pd.DataFrame({"lon": s.lon, "lat": s.lat, "class": s.classes, "split": name})
                   for name, s in draws.items()]).to_csv(root / datasets.YFCC_FILE, index=False)
        rows = {name: np.ones(len(split.classes), bool) for name, split in draws.items()}

    resolution = "standard" if dataset in ("birdsnap", "nabirds", "yfcc") else "pretrain"
    for name, split in draws.items():
        keep = rows[name]
        feats = datasets.feature_file(dataset, name, resolution, cnn_model)
        _write_features(root / feats, world, split.classes[keep], split.xyz[keep], rng, feature_dtype)
        if dataset == "inat_2018":
            _link(root, feats, datasets.feature_file(dataset, name, "standard"))
            _link(root, feats, datasets.feature_file(dataset, name, "high_res"))
        if dataset == "inat_2017":
            _link(root, feats, datasets.feature_file(dataset, name, "standard"))
        if name == "train":
            continue
        preds = datasets.prediction_file(dataset, name)
        _write_predictions(root / preds, world, split.classes[keep], FULL_DELTA, rng)
        if dataset == "inat_2018":
            _link(root, preds, datasets.prediction_file(dataset, name, resolution="high_res"))
        if dataset in ("inat_2018", "fmow"):
            for ratio in fewshot_ratios:
                _write_predictions(root / datasets.prediction_file(dataset, name, "fewshot", ratio,
                                                                   cnn_model=cnn_model),
                                   world, split.classes[keep], FEWSHOT_DELTA, rng)
    logger.info("wrote synthetic %s (%s, %d classes, %d-d features) to %s", dataset,
                ", ".join(f"{n} {s}" for n, s in sizes.items()), num_classes, feat_dim, root)
    return root


def main(argv=None):
    p = argparse.ArgumentParser(description="Write a synthetic dataset in the CSP bundle's on-disk layout",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--dataset", required=True, choices=list(datasets.DATASET_INFO), help="layout to write")
    p.add_argument("--out", required=True, help="folder that receives <dataset>/ (use it as CSP_DATA_DIR)")
    p.add_argument("--num_train", type=int, default=2000, help="training entries")
    p.add_argument("--num_val", type=int, default=500, help="validation entries")
    p.add_argument("--num_test", type=int, default=None, help="test entries (None: num_val; 0 = none)")
    p.add_argument("--num_classes", type=int, default=None, help="classes (None: the real dataset's count)")
    p.add_argument("--feat_dim", type=int, default=2048, help="image-feature dimension")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--invalid_frac", type=float, default=0.02, help="share of entries without location")
    p.add_argument("--fewshot_ratios", type=float, nargs="*", default=[0.05],
                   help="ratios of the few-shot prediction files (inat_2018, fmow)")
    p.add_argument("--cnn_model", default="inception_v3", help="image-model tag in folder names (inat_2018)")
    p.add_argument("--feature_dtype", default="float32", choices=FEATURE_DTYPES,
                   help="dtype of the image-feature files (float16: half the bytes, read as float32)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s - %(levelname)s - %(message)s")
    write_synthetic_dataset(args.dataset, args.out, args.num_train, args.num_val, args.num_test, args.num_classes,
                            args.feat_dim, args.seed, args.invalid_frac, tuple(args.fewshot_ratios), args.cnn_model,
                            args.feature_dtype)


if __name__ == "__main__":
    run_command(main, output_flag="--out")
