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
BLOCK_DEG_RANGE = (1e-6, 180.0)  # below, the cell ids overflow int64; above, the world is one or two cells
EARTH_RADIUS_KM = 6371.0088


def check_block_deg(block_deg):
    """ValueError naming --block_deg and BLOCK_DEG_RANGE unless `block_deg` lies in it."""
    low, high = BLOCK_DEG_RANGE
    if not low <= block_deg <= high:
        raise ValueError(f"--block_deg must be between {low:g} and {high:g} degrees (the side of a cell), "
                         f"got {block_deg}")


def block_ids(lonlat, block_deg):
    """(N,) int64 id of the `block_deg` × `block_deg` degree cell of each (lon, lat) point (lon 180 falls in the
    cell of lon 180 - block_deg, lat 90 in the top row)."""
    check_block_deg(block_deg)
    columns = int(np.ceil(360.0 / block_deg))
    rows = int(np.ceil(180.0 / block_deg))
    column = np.clip(np.floor((lonlat[:, 0] + 180.0) / block_deg), 0, columns - 1).astype(np.int64)
    row = np.clip(np.floor((lonlat[:, 1] + 90.0) / block_deg), 0, rows - 1).astype(np.int64)
    return row * columns + column


def block_holdout(lonlat, fraction, block_deg, rng):
    """(N,) bool: whole cells (`block_ids`), taken in the random order of `rng`, until at least
    round(fraction · N) points are held out, but never every cell. ValueError when the points fill one cell."""
    cells = block_ids(lonlat, block_deg)
    unique, counts = np.unique(cells, return_counts=True)
    if len(unique) == 1:
        raise ValueError(f"the labelled rows fall into 1 cell of --block_deg {block_deg:g} degrees; a "
                         f"spatial_block split needs at least 2 cells (one held out, one to train on): give a "
                         f"smaller --block_deg or --split_method random")
    order = rng.permutation(len(unique))
    wanted = round(fraction * len(lonlat))
    enough = np.searchsorted(np.cumsum(counts[order]), wanted) + 1 if wanted else 0
    taken = order[:min(enough, len(unique) - 1)]
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
        raise ValueError(f"the points fall into {len(np.unique(cells))} cell(s) of --block_deg {block_deg:g} degrees, "
                         f"fewer than --folds {folds}: a spatial split needs at least one cell per fold; give a "
                         f"smaller --block_deg or fewer --folds")
    splits = list(GroupKFold(folds, shuffle=True, random_state=seed).split(lonlat, groups=cells))
    if method == "spatial_block":
        return splits
    if not buffer_km > 0:
        raise ValueError(f"--split_method buffered needs --buffer_km > 0, got {buffer_km}")
    return [(train[~within_km(lonlat[train], lonlat[test], buffer_km)], test) for train, test in splits]
