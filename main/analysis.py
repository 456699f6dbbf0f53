"""Where does one model beat another? MRR and per-region ΔMRR tables (the paper's latitude analysis, §13).

Inputs are per-sample ranks of the true class (1-based, e.g. from `evaluation.py`) or differences of reciprocal
ranks, and the samples' locations (N, 2) as (lon, lat) in degrees; samples whose location has a NaN are skipped
(their number is logged and stored in the table's ``attrs['num_nan_locs']``). Every function returns a pandas
DataFrame, one row per bin, so the tables print and save with ``to_csv``.

Bins are half-open [lower, upper) except the last one, which also holds its upper edge (lat = 90, lon = 180).
Empty bins have count 0 and NaN statistics.
"""
import logging

import numpy as np
import pandas as pd
import torch

logger = logging.getLogger(__name__)


def _numpy(values):
    return torch.as_tensor(values).detach().cpu().numpy()


def reciprocal_ranks(ranks):
    """1 / rank per sample, float64; `ranks` (N,) 1-based ranks of the true class (numpy or torch)."""
    ranks = _numpy(ranks).astype(np.float64)
    if ranks.ndim != 1:
        raise ValueError(f"ranks must be a 1-d array (one rank per sample), got shape {ranks.shape}")
    if not (np.isfinite(ranks).all() and (ranks >= 1).all()):
        raise ValueError(f"ranks must be finite and >= 1 (1-based), got min {np.nanmin(ranks, initial=np.inf)}")
    return 1.0 / ranks


def mrr(ranks):
    """Mean reciprocal rank of (N,) 1-based ranks."""
    return float(reciprocal_ranks(ranks).mean())


def _check_edges(edges, what):
    edges = np.asarray(edges, dtype=np.float64)
    if edges.ndim != 1 or len(edges) < 2 or not (np.diff(edges) > 0).all():
        raise ValueError(f"{what} must be at least two strictly increasing bin edges, got {edges.tolist()}")
    return edges


def _bin_index(values, edges):
    """Bin of each value: [e_i, e_{i+1}), the last bin closed; -1 outside the edges."""
    index = np.digitize(values, edges) - 1
    index[values == edges[-1]] = len(edges) - 2
    index[(index < 0) | (index >= len(edges) - 1)] = -1
    return index


def _located(locs, d_mrr):
    """(lon, lat) float64 and d_mrr float64 of the samples with a location, and how many were skipped."""
    locs = _numpy(locs).astype(np.float64)
    d_mrr = _numpy(d_mrr).astype(np.float64).reshape(-1)
    if locs.ndim != 2 or locs.shape[1] != 2:
        raise ValueError(f"locs must have shape (N, 2) with columns (lon, lat) in degrees, got {locs.shape}")
    if len(locs) != len(d_mrr):
        raise ValueError(f"{len(locs)} locations but {len(d_mrr)} per-sample values")
    valid = ~np.isnan(locs).any(axis=1)
    num_nan = int((~valid).sum())
    if num_nan:
        logger.info("%d of %d samples have no location and are skipped", num_nan, len(locs))
    return locs[valid], d_mrr[valid], num_nan


def _bin_table(columns, bins, d_mrr, do_positive, num_nan):
    """Per-bin count, mean d_mrr and fraction of samples with d_mrr > 0 (< 0 if not do_positive)."""
    num_bins = len(next(iter(columns.values())))
    inside = bins >= 0
    count = np.bincount(bins[inside], minlength=num_bins)
    better = d_mrr[inside] > 0 if do_positive else d_mrr[inside] < 0
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.bincount(bins[inside], weights=d_mrr[inside], minlength=num_bins) / count
        frac = np.bincount(bins[inside], weights=better, minlength=num_bins) / count
    table = pd.DataFrame({**columns, "count": count, "mean_d_mrr": mean,
                          "frac_positive" if do_positive else "frac_negative": frac})
    table.attrs.update(num_nan_locs=num_nan, num_outside=int((~inside).sum()))
    return table


def compute_mrr_by_lat(locs, d_mrr, do_positive=True, num_interval=18, intervals=None):
    """ΔMRR per latitude band.

    `locs` (N, 2) (lon, lat) degrees; `d_mrr` (N,) per-sample difference of reciprocal ranks, e.g.
    1/rank_A − 1/rank_B. Bands: `num_interval` equal bands over [-90, 90] (default 10°, all 18 reported), or the
    edges `intervals` (samples outside them are counted in ``attrs['num_outside']``). Columns: lat_min, lat_max,
    lat_center, count, mean_d_mrr, frac_positive (share with d_mrr > 0; frac_negative, d_mrr < 0, if not
    `do_positive`).
    """
    if intervals is None:
        intervals = np.linspace(-90.0, 90.0, int(num_interval) + 1)
    edges = _check_edges(intervals, "intervals")
    lonlat, d_mrr, num_nan = _located(locs, d_mrr)
    columns = {"lat_min": edges[:-1], "lat_max": edges[1:], "lat_center": (edges[:-1] + edges[1:]) / 2}
    return _bin_table(columns, _bin_index(lonlat[:, 1], edges), d_mrr, do_positive, num_nan)


def compute_mrr_by_latlongrid(locs, d_mrr, lat_intervals=None, lon_intervals=None, do_positive=True):
    """ΔMRR per latitude × longitude box (default 10° × 10°).

    Rows go from the northernmost band down, west to east within a band (the original's box order). Columns:
    lon_min, lon_max, lat_min, lat_max, count, mean_d_mrr, frac_positive (or frac_negative).
    """
    lat_edges = _check_edges(np.linspace(-90.0, 90.0, 19) if lat_intervals is None else lat_intervals,
                             "lat_intervals")
    lon_edges = _check_edges(np.linspace(-180.0, 180.0, 37) if lon_intervals is None else lon_intervals,
                             "lon_intervals")
    lonlat, d_mrr, num_nan = _located(locs, d_mrr)
    num_lat, num_lon = len(lat_edges) - 1, len(lon_edges) - 1
    lat_bin = _bin_index(lonlat[:, 1], lat_edges)
    lon_bin = _bin_index(lonlat[:, 0], lon_edges)
    row = num_lat - 1 - lat_bin  # north first
    boxes = np.where((lat_bin >= 0) & (lon_bin >= 0), row * num_lon + lon_bin, -1)
    lat_of_row = np.repeat(np.arange(num_lat)[::-1], num_lon)
    lon_of_col = np.tile(np.arange(num_lon), num_lat)
    columns = {"lon_min": lon_edges[lon_of_col], "lon_max": lon_edges[lon_of_col + 1],
               "lat_min": lat_edges[lat_of_row], "lat_max": lat_edges[lat_of_row + 1]}
    return _bin_table(columns, boxes, d_mrr, do_positive, num_nan)


def compare_models(locs, ranks_a, ranks_b, names=("model_a", "model_b"), num_interval=18, lat_intervals=None,
                   lon_intervals=None):
    """Tables comparing two models evaluated on the same samples.

    `locs` (N, 2) (lon, lat) degrees (NaN allowed); `ranks_a`, `ranks_b` (N,) 1-based ranks of the true class.
    ΔMRR = 1/rank_a − 1/rank_b, so positive means model a ranks the true class higher. Returns a dict of
    DataFrames: ``mrr`` (model, num_samples, mrr over all samples), ``by_lat`` (:func:`compute_mrr_by_lat` with
    `num_interval` bands) and ``by_latlon`` (:func:`compute_mrr_by_latlongrid` with `lat_intervals`,
    `lon_intervals`).
    """
    rr_a, rr_b = reciprocal_ranks(ranks_a), reciprocal_ranks(ranks_b)
    if len(rr_a) != len(rr_b):
        raise ValueError(f"ranks_a has {len(rr_a)} samples but ranks_b has {len(rr_b)}; "
                         f"both models must be evaluated on the same samples")
    d_mrr = rr_a - rr_b
    summary = pd.DataFrame({"model": list(names), "num_samples": [len(rr_a), len(rr_b)],
                            "mrr": [rr_a.mean(), rr_b.mean()]})
    return {"mrr": summary,
            "by_lat": compute_mrr_by_lat(locs, d_mrr, num_interval=num_interval),
            "by_latlon": compute_mrr_by_latlongrid(locs, d_mrr, lat_intervals, lon_intervals)}
