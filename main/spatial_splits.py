"""Spatially honest splits of located points: cells of `block_deg` degrees held out whole, and a buffer around the
held-out points.

Neighbouring places are alike (spatial autocorrelation), so a random split puts near-copies of each test point
into training and flatters every model. A spatial-block split assigns whole lon/lat cells to folds; the buffered
variant also leaves out the training points within `buffer_km` (great-circle distance) of any test point.
All inputs are (N, 2) (lon, lat) in degrees.
"""
import numpy as np
from sklearn.model_selection import GroupKFold, KFold
from sklearn.neighbors import BallTree

SPLIT_METHODS = ("random", "spatial_block", "buffered")
DEFAULT_BLOCK_DEG = 10.0
EARTH_RADIUS_KM = 6371.0088


def block_ids(lonlat, block_deg):
    """(N,) int64 id of the `block_deg` × `block_deg` degree cell of each (lon, lat) point (lon 180 falls in the
    cell of lon 180 - block_deg, lat 90 in the top row)."""
    if not block_deg > 0:
        raise ValueError(f"--block_deg must be a positive number of degrees, got {block_deg}")
    columns = int(np.ceil(360.0 / block_deg))
    rows = int(np.ceil(180.0 / block_deg))
    column = np.clip(np.floor((lonlat[:, 0] + 180.0) / block_deg), 0, columns - 1).astype(np.int64)
    row = np.clip(np.floor((lonlat[:, 1] + 90.0) / block_deg), 0, rows - 1).astype(np.int64)
    return row * columns + column


def block_holdout(lonlat, fraction, block_deg, rng):
    """(N,) bool: whole cells (`block_ids`), taken in the random order of `rng`, until at least
    round(fraction · N) points are held out."""
    cells = block_ids(lonlat, block_deg)
    unique, counts = np.unique(cells, return_counts=True)
    order = rng.permutation(len(unique))
    wanted = round(fraction * len(lonlat))
    taken = order[:np.searchsorted(np.cumsum(counts[order]), wanted) + 1] if wanted else order[:0]
    return np.isin(cells, unique[taken])


def within_km(points, centres, buffer_km):
    """(len(points),) bool: True where a point lies within `buffer_km` great-circle km of any of `centres`."""
    if buffer_km <= 0 or len(centres) == 0 or len(points) == 0:
        return np.zeros(len(points), bool)
    tree = BallTree(np.radians(centres[:, ::-1]), metric="haversine")
    distance, _ = tree.query(np.radians(points[:, ::-1]), k=1)
    return distance[:, 0] * EARTH_RADIUS_KM < buffer_km


def fold_indices(lonlat, method, folds, seed, block_deg=DEFAULT_BLOCK_DEG, buffer_km=0.0):
    """[(train rows, test rows)] of a `folds`-fold split: `random` (KFold, shuffled with `seed`), `spatial_block`
    (GroupKFold over `block_ids`, groups shuffled with `seed`), `buffered` (spatial_block, then the training rows
    within `buffer_km` of a test row left out). ValueError when a split cannot be made (too few points or cells)."""
    if method not in SPLIT_METHODS:
        raise ValueError(f"--split_method must be one of {', '.join(SPLIT_METHODS)}, got {method!r}")
    if isinstance(folds, bool) or not isinstance(folds, (int, np.integer)) or folds < 2:
        raise ValueError(f"--folds must be an integer of at least 2, got {folds!r}")
    if len(lonlat) < folds:
        raise ValueError(f"{len(lonlat)} points cannot make {folds} folds; give more points or fewer --folds")
    if method == "random":
        return list(KFold(folds, shuffle=True, random_state=seed).split(lonlat))
    cells = block_ids(lonlat, block_deg)
    if len(np.unique(cells)) < folds:
        raise ValueError(f"the points fall into {len(np.unique(cells))} cells of --block_deg {block_deg}, fewer "
                         f"than --folds {folds}; give a smaller --block_deg or fewer --folds")
    splits = list(GroupKFold(folds, shuffle=True, random_state=seed).split(lonlat, groups=cells))
    if method == "spatial_block":
        return splits
    if not buffer_km > 0:
        raise ValueError(f"--split_method buffered needs --buffer_km > 0, got {buffer_km}")
    return [(train[~within_km(lonlat[train], lonlat[test], buffer_km)], test) for train, test in splits]
