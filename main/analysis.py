"""MRR and ΔMRR per latitude band and per latitude × longitude box: where one model beats another.

Ranks are 1-based (N,), locations (N, 2) (lon, lat) degrees; NaN locations are skipped (`attrs['num_nan_locs']`).
Bins are [lower, upper), the last closed; empty bins have count 0 and NaN statistics.
"""
import logging

import numpy as np
import pandas as pd
import torch

logger = logging.getLogger(__name__)


def _numpy(values):
    return torch.as_tensor(values).detach().cpu().numpy()


def reciprocal_ranks(ranks):
    """1 / rank per sample, float64, of (N,) 1-based ranks (numpy or torch)."""
    ranks = _numpy(ranks).astype(np.float64)
    if ranks.ndim != 1:
        raise ValueError(f"ranks must be a 1-d array (one rank per sample), got shape {ranks.shape}")
    if not (np.isfinite(ranks).all() and (ranks >= 1).all()):
        raise ValueError(f"ranks must be finite and >= 1 (1-based), got min {np.nanmin(ranks, initial=np.inf)}")
    return 1.0 / ranks


def mrr(ranks):
    return float(reciprocal_ranks(ranks).mean())


def _check_edges(edges, what):
    edges = np.asarray(edges, dtype=np.float64)
    if edges.ndim != 1 or len(edges) < 2 or not (np.diff(edges) > 0).all():
        raise ValueError(f"{what} must be at least two strictly increasing bin edges, got {edges.tolist()}")
    return edges


def _bin_index(values, edges):
    index = np.digitize(values, edges) - 1
    index[values == edges[-1]] = len(edges) - 2
    index[(index < 0) | (index >= len(edges) - 1)] = -1
    return index


def _located(locs, d_mrr):
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
    """ΔMRR `d_mrr` (N,) per latitude band of `locs` (N, 2): `num_interval` equal bands or
    edges `intervals`; columns lat_min, lat_max, lat_center, count, mean_d_mrr, frac_positive."""
    if intervals is None:
        intervals = np.linspace(-90.0, 90.0, int(num_interval) + 1)
    edges = _check_edges(intervals, "intervals")
    lonlat, d_mrr, num_nan = _located(locs, d_mrr)
    columns = {"lat_min": edges[:-1], "lat_max": edges[1:], "lat_center": (edges[:-1] + edges[1:]) / 2}
    return _bin_table(columns, _bin_index(lonlat[:, 1], edges), d_mrr, do_positive, num_nan)


def compute_mrr_by_latlongrid(locs, d_mrr, lat_intervals=None, lon_intervals=None, do_positive=True):
    """ΔMRR per latitude × longitude box (default 10° × 10°), north to south, west to east."""
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
    """{"mrr", "by_lat", "by_latlon"} of ΔMRR = 1/rank_a − 1/rank_b (positive: a is better) for two
    models' ranks (N,) on the same samples."""
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
