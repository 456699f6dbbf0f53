"""Non-neural location priors (Mac Aodha et al. 2019), fitted on training (N, 2) (lon, lat) degrees and
classes; `prior(locs)` gives p(class | location) (M, C) for (M, 2) (lon, lat) degrees:

* `no_prior`: ones; `train_freq`: (1 + n_c) / Σ(1 + n_c);
* `grid`: (n_{c,cell} + pc − 1) / (n_cell + C·pc − C);
* `nn_knn` / `nn_dist`: (1 + class counts) of the `num_neighbors` nearest / within `dist_thresh`, normalised;
* `kde`: the adaptive kernel density estimate of Berg et al. 2014.

Rows with a NaN coordinate get the uniform prior.
"""
import logging
import math
import sys

import numpy as np
import scipy.sparse
import torch
from sklearn.neighbors import BallTree
from tqdm import tqdm

logger = logging.getLogger(__name__)

# Name of each baseline → the header line logged before its accuracy block (an interface of the log).
BASELINE_LOG_HEADERS = {
    "no_prior": "\nNo prior",
    "train_freq": "\nTrain frequency prior",
    "grid": "\nDiscrete grid prior",
    "nn_knn": "\nNearest neighbor KNN prior",
    "nn_dist": "\nNearest neighbor distance prior",
    "kde": "\nKernel density estimate prior",
}
BASELINE_NAMES = tuple(BASELINE_LOG_HEADERS)

DIST_TYPES = ("euclidean", "haversine")


def _hyper_params(num_neighbors, dist_type, dist_thresh, gp_size, pseudo_count, kde_quant, kde_nb):
    return {
        "num_neighbors": num_neighbors,
        "dist_type": dist_type,  # with haversine, dist_thresh is in radians (km / 6371.4)
        "dist_thresh": dist_thresh,
        "gp_size": gp_size,  # [lon_bins, lat_bins]
        "pseudo_count": pseudo_count,
        "kde_dist_type": "euclidean",
        "kde_quant": kde_quant,  # degrees
        "kde_nb": kde_nb,
    }


# The cross-validated hyper-parameters of Mac Aodha et al.'s code; birdsnap is keyed by meta_type. fmow, which has
# none, takes inat_2017's, the dataset closest to it in size and extent (not cross-validated).
CROSS_VAL_HYPER_PARAMS = {
    "inat_2018": _hyper_params(1500, "euclidean", 2.0, [180, 60], 2, 5.0, 700),
    "inat_2017": _hyper_params(1450, "euclidean", 5.0, [45, 30], 2, 5.0, 700),
    "birdsnap": {
        "ebird_meta": _hyper_params(700, "euclidean", 5.0, [30, 30], 2, 0.001, 500),
        "orig_meta": _hyper_params(100, "euclidean", 9.0, [225, 60], 2, 0.001, 600),
    },
    "nabirds": _hyper_params(500, "euclidean", 6.0, [45, 60], 2, 0.001, 600),
    "yfcc": _hyper_params(75, "haversine", 2.0 / 6371.4, [540, 150], 3, 0.001, 300),
    "fmow": _hyper_params(1450, "euclidean", 5.0, [45, 30], 2, 5.0, 700),
}
# your own data (--dataset custom) has none cross-validated either: it gets fmow's (clamped to the data, see
# clamp_to_data), as the encoder table gives it fmow's flag values
CROSS_VAL_HYPER_PARAMS["custom"] = CROSS_VAL_HYPER_PARAMS["fmow"]

# Evaluation points per BallTree query: bounds the neighbour lists held at once (chunk × neighbours indices).
CHUNK_SIZE = 1024


def get_cross_val_hyper_params(dataset, meta_type=""):
    """The baselines' cross-validated hyper-parameters for `dataset` (a fresh dict)."""
    if dataset not in CROSS_VAL_HYPER_PARAMS:
        raise ValueError(f"no baseline hyper-parameters for dataset {dataset!r}; "
                         f"known datasets: {', '.join(CROSS_VAL_HYPER_PARAMS)}")
    entry = CROSS_VAL_HYPER_PARAMS[dataset]
    if "num_neighbors" not in entry:
        if meta_type not in entry:
            raise ValueError(f"no baseline hyper-parameters for dataset {dataset!r} with meta_type "
                             f"{meta_type!r}; use --meta_type {' or '.join(entry)}")
        entry = entry[meta_type]
    return {key: list(value) if isinstance(value, list) else value for key, value in entry.items()}


def _numpy(values):
    return torch.as_tensor(values).detach().cpu().numpy()


def _lonlat_array(locs, what, allow_nan):
    """(N, 2) float64 numpy copy of (lon, lat) degrees; ValueError naming bad rows."""
    arr = _numpy(locs).astype(np.float64)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(f"{what} must have shape (N, 2) with columns (lon, lat) in degrees, got {arr.shape}")
    nan_rows = np.isnan(arr).any(axis=1)
    if nan_rows.any() and not allow_nan:
        raise ValueError(f"{what} has NaN coordinates in rows {np.flatnonzero(nan_rows)[:10].tolist()} "
                         f"({nan_rows.sum()} rows); remove the samples without a location first")
    with np.errstate(invalid="ignore"):
        bad = ~nan_rows & ((np.abs(arr[:, 0]) > 180) | (np.abs(arr[:, 1]) > 90) | ~np.isfinite(arr).all(axis=1))
    if bad.any():
        rows = np.flatnonzero(bad)[:10]
        raise ValueError(f"{what} rows {rows.tolist()} are outside lon [-180, 180] / lat [-90, 90] "
                         f"(e.g. {arr[rows[0]].tolist()}); locations must be (lon, lat) in degrees")
    return arr


def _tree_coords(lonlat, dist_type):
    latlon = np.ascontiguousarray(lonlat[:, ::-1])
    return np.deg2rad(latlon) if dist_type == "haversine" else latlon


def _require(hyper_params, keys, name):
    missing = [key for key in keys if key not in (hyper_params or {})]
    if missing:
        raise ValueError(f"baseline {name!r} needs hyper_params {missing}; "
                         f"get them with get_cross_val_hyper_params(dataset, meta_type)")


def _check_dist_type(value, key):
    if value not in DIST_TYPES:
        raise ValueError(f"hyper_params[{key!r}] = {value!r}; use one of {', '.join(DIST_TYPES)}")


def _class_counts_into(out, rows, classes, weights=None):
    flat = np.bincount(rows * out.shape[1] + classes, weights=weights, minlength=out.size)
    out[...] = flat.reshape(out.shape)


def _chunks(num, desc):
    starts = range(0, num, CHUNK_SIZE)
    return tqdm(starts, desc=desc, leave=False, disable=len(starts) <= 1 or not sys.stderr.isatty())


class Baseline:
    """A fitted prior; subclasses implement `_valid_prior`: (m, 2) float64 lonlat → (m, C) float64."""

    name = None
    invalid_value = None  # the prior of rows without a location; None = uniform 1/C

    def __init__(self, num_classes):
        self.num_classes = int(num_classes)

    @property
    def log_header(self):
        return BASELINE_LOG_HEADERS[self.name]

    def prior_numpy(self, locs):
        """(M, C) float64 prior for `locs` (M, 2) (lon, lat) degrees; NaN rows get the uniform prior."""
        lonlat = _lonlat_array(locs, "evaluation locations", allow_nan=True)
        valid = ~np.isnan(lonlat).any(axis=1)
        fill = 1.0 / self.num_classes if self.invalid_value is None else self.invalid_value
        if valid.all():
            return self._valid_prior(lonlat)
        out = np.full((len(lonlat), self.num_classes), fill, dtype=np.float64)
        if valid.any():
            out[valid] = self._valid_prior(lonlat[valid])
        return out

    def prior(self, locs, device="cpu", dtype=torch.float32):
        """(M, C) prior on `device` as `dtype` (computed in float64 on the CPU)."""
        return torch.from_numpy(self.prior_numpy(locs)).to(device=device, dtype=dtype)


class NoPrior(Baseline):
    name = "no_prior"
    invalid_value = 1.0

    def _valid_prior(self, lonlat):
        return np.ones((len(lonlat), self.num_classes))


class TrainFreqPrior(Baseline):

    name = "train_freq"

    def __init__(self, classes, num_classes):
        super().__init__(num_classes)
        freq = 1.0 + np.bincount(classes, minlength=self.num_classes)
        self.freq = freq / freq.sum()
        self.invalid_value = self.freq

    def _valid_prior(self, lonlat):
        return np.tile(self.freq, (len(lonlat), 1))


class GridPrior(Baseline):
    """Per-cell class frequencies on a [lon_bins, lat_bins] grid, pseudo-count pc ≥ 1; lon = 180 and
    lat = 90 fall in the last cell."""

    name = "grid"

    def __init__(self, locs, classes, num_classes, gp_size, pseudo_count):
        super().__init__(num_classes)
        if len(gp_size) != 2 or min(gp_size) < 1:
            raise ValueError(f"hyper_params['gp_size'] = {gp_size}; it must be [lon_bins, lat_bins], both >= 1")
        if pseudo_count < 1:
            raise ValueError(f"hyper_params['pseudo_count'] = {pseudo_count}; it must be >= 1 "
                             f"(smaller values give negative probabilities)")
        self.lon_bins, self.lat_bins = int(gp_size[0]), int(gp_size[1])
        self.pseudo_count = float(pseudo_count)
        cells = self._cells(locs)
        shape = (self.lat_bins * self.lon_bins, self.num_classes)
        self.counts = scipy.sparse.csr_matrix((np.ones(len(cells)), (cells, classes)), shape=shape)
        self.cell_totals = np.bincount(cells, minlength=shape[0]).astype(np.float64)

    def _cells(self, lonlat):
        lon = np.floor((lonlat[:, 0] + 180) / 360.0 * self.lon_bins).astype(np.int64)
        lat = np.floor((lonlat[:, 1] + 90) / 180.0 * self.lat_bins).astype(np.int64)
        return np.clip(lat, 0, self.lat_bins - 1) * self.lon_bins + np.clip(lon, 0, self.lon_bins - 1)

    def _valid_prior(self, lonlat):
        cells = self._cells(lonlat)
        extra = self.pseudo_count - 1
        denom = self.cell_totals[cells] + self.num_classes * extra
        out = np.full((len(cells), self.num_classes), 1.0 / self.num_classes)
        known = denom > 0
        out[known] = (self.counts[cells[known]].toarray() + extra) / denom[known, None]
        return out


class NeighborPrior(Baseline):

    def __init__(self, name, locs, classes, num_classes, dist_type, num_neighbors=None, dist_thresh=None):
        super().__init__(num_classes)
        _check_dist_type(dist_type, "dist_type")
        if name == "nn_knn" and not 1 <= num_neighbors <= len(locs):
            raise ValueError(f"hyper_params['num_neighbors'] = {num_neighbors} but there are {len(locs)} training "
                             f"locations; choose num_neighbors between 1 and {len(locs)}")
        self.name = name
        self.dist_type = dist_type
        self.num_neighbors = num_neighbors
        self.dist_thresh = dist_thresh
        self.classes = classes
        self.tree = BallTree(_tree_coords(locs, dist_type), metric=dist_type)

    def _valid_prior(self, lonlat):
        query = _tree_coords(lonlat, self.dist_type)
        out = np.empty((len(query), self.num_classes))
        for start in _chunks(len(query), self.name):
            part = query[start:start + CHUNK_SIZE]
            if self.name == "nn_knn":
                neighbors = self.tree.query(part, k=self.num_neighbors, return_distance=False)
                rows = np.repeat(np.arange(len(part)), self.num_neighbors)
                neighbors = neighbors.ravel()
            else:
                lists = self.tree.query_radius(part, r=self.dist_thresh)
                rows = np.repeat(np.arange(len(part)), [len(ids) for ids in lists])
                neighbors = np.concatenate(lists).astype(np.int64)
            counts = out[start:start + len(part)]
            _class_counts_into(counts, rows, self.classes[neighbors])
            counts += 1.0
            counts /= counts.sum(axis=1, keepdims=True)
        return out


class KDEPrior(Baseline):
    """Adaptive KDE (Berg et al. 2014, without time): locations floored to `kde_quant` degrees, one point
    per (class, cell) with count n; at x, h = half the distance to the `kde_nb`-th nearest point, points within 2h add
    n · (2πh)^-1 exp(−d² / 2h²); the smallest non-zero value is added to every class, then normalised."""

    name = "kde"

    def __init__(self, locs, classes, num_classes, kde_quant, kde_nb, kde_dist_type):
        super().__init__(num_classes)
        _check_dist_type(kde_dist_type, "kde_dist_type")
        if not kde_quant > 0:
            raise ValueError(f"hyper_params['kde_quant'] = {kde_quant}; it must be > 0 (degrees)")
        keys, self.counts = _kde_points(locs, classes, kde_quant)
        num_cells = len(np.unique(keys[:, 1:], axis=0))
        if not 1 <= kde_nb <= len(keys):
            raise ValueError(f"hyper_params['kde_nb'] = {kde_nb} but the training data quantised to "
                             f"kde_quant = {kde_quant} degrees gives only {len(keys)} (class, cell) points in "
                             f"{num_cells} distinct cells; lower kde_nb to at most {len(keys)} or lower kde_quant")
        self.kde_nb = int(kde_nb)
        self.kde_quant = kde_quant
        self.dist_type = kde_dist_type
        self.classes = keys[:, 0]
        self.tree = BallTree(_tree_coords(keys[:, 1:] * float(kde_quant), kde_dist_type), metric=kde_dist_type)

    def _valid_prior(self, lonlat):
        query = _tree_coords(lonlat, self.dist_type)
        out = np.empty((len(query), self.num_classes))
        for start in _chunks(len(query), self.name):
            part = query[start:start + CHUNK_SIZE]
            knn_dist, _ = self.tree.query(part, k=self.kde_nb)
            bandwidth = 0.5 * knn_dist.max(axis=1)
            if (bandwidth == 0).any():
                row = start + int(np.flatnonzero(bandwidth == 0)[0])
                raise ValueError(f"KDE bandwidth is 0 at evaluation location {lonlat[row].tolist()}: its "
                                 f"kde_nb = {self.kde_nb} nearest training points all lie in its own cell; "
                                 f"lower hyper_params['kde_quant'] (now {self.kde_quant}) or 'kde_nb'")
            lists, dists = self.tree.query_radius(part, r=2 * bandwidth + 1e-9, return_distance=True)
            rows = np.repeat(np.arange(len(part)), [len(ids) for ids in lists])
            neighbors = np.concatenate(lists).astype(np.int64)
            h = bandwidth[rows]
            kernel = np.exp(-np.concatenate(dists) ** 2 / (2 * h ** 2)) / (2 * math.pi * h)
            dens = out[start:start + len(part)]
            _class_counts_into(dens, rows, self.classes[neighbors], weights=self.counts[neighbors] * kernel)
            dens += np.where(dens > 0, dens, np.inf).min(axis=1, keepdims=True)
            dens /= dens.sum(axis=1, keepdims=True)
        return out


def _kde_points(locs, classes, kde_quant):
    cells = np.floor(np.asarray(locs) / kde_quant).astype(np.int64)
    return np.unique(np.column_stack([classes, cells]), axis=0, return_counts=True)


def clamp_to_data(name, hyper_params, train_locs, train_classes):
    """Lower `num_neighbors` and `kde_nb` in `hyper_params` (in place) to what the data offers;
    returns one sentence per change."""
    notes = []
    if name == "nn_knn" and hyper_params["num_neighbors"] > len(train_locs):
        notes.append(f"nn_knn: num_neighbors lowered from {hyper_params['num_neighbors']} (the dataset's "
                     f"cross-validated value) to the {len(train_locs)} training locations")
        hyper_params["num_neighbors"] = len(train_locs)
    if name == "kde" and hyper_params["kde_quant"] > 0:
        points = len(_kde_points(train_locs, train_classes, hyper_params["kde_quant"])[0])
        if hyper_params["kde_nb"] > points:
            notes.append(f"kde: kde_nb lowered from {hyper_params['kde_nb']} (the dataset's cross-validated value) "
                         f"to the {points} (class, cell) points of the training data")
            hyper_params["kde_nb"] = points
    return notes


def make_baseline(name, train_locs, train_classes, num_classes, hyper_params=None):
    """Fit baseline `name` on `train_locs` (N, 2) (lon, lat) degrees and `train_classes` (N,) in [0, num_classes)."""
    if name not in BASELINE_LOG_HEADERS:
        raise ValueError(f"unknown baseline {name!r}; valid baselines: {', '.join(BASELINE_NAMES)}")
    locs = _lonlat_array(train_locs, "training locations", allow_nan=False)
    classes = _numpy(train_classes).astype(np.int64).reshape(-1)
    if len(classes) != len(locs):
        raise ValueError(f"{len(locs)} training locations but {len(classes)} training classes")
    if len(classes) and (classes.min() < 0 or classes.max() >= num_classes):
        raise ValueError(f"training classes must lie in [0, {num_classes}), got [{classes.min()}, {classes.max()}]")
    if name == "no_prior":
        return NoPrior(num_classes)
    if name == "train_freq":
        return TrainFreqPrior(classes, num_classes)
    hp = hyper_params
    if name == "grid":
        _require(hp, ["gp_size", "pseudo_count"], name)
        return GridPrior(locs, classes, num_classes, hp["gp_size"], hp["pseudo_count"])
    if name == "kde":
        _require(hp, ["kde_quant", "kde_nb", "kde_dist_type"], name)
        return KDEPrior(locs, classes, num_classes, hp["kde_quant"], hp["kde_nb"], hp["kde_dist_type"])
    _require(hp, ["dist_type", "num_neighbors" if name == "nn_knn" else "dist_thresh"], name)
    return NeighborPrior(name, locs, classes, num_classes, hp["dist_type"],
                         num_neighbors=hp.get("num_neighbors"), dist_thresh=hp.get("dist_thresh"))
