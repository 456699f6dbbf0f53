import json
import math

import numpy as np
import pytest
import torch

from csp import baselines as bl


@pytest.fixture(scope="module")
def golden(golden_dir):
    data = dict(np.load(golden_dir / "baselines.npz"))
    meta = json.loads((golden_dir / "baselines.json").read_text())
    return data, meta


# The original computes the KDE's squared distances in float32 (its inputs are float32); we use float64, hence
# ~1e-7 relative differences there. Everything else matches to rounding.
GOLDEN_RTOL = {"train_freq": 1e-12, "grid": 1e-12, "nn_knn": 1e-12, "nn_dist": 1e-12, "kde": 1e-6}


@pytest.mark.parametrize("name", sorted(GOLDEN_RTOL))
def test_golden_priors(golden, name):
    data, meta = golden
    baseline = bl.make_baseline(name, data["train_locs"], data["train_classes"], meta["num_classes"],
                                meta["hyper_params"])
    got = baseline.prior(data["eval_locs"], dtype=torch.float64).numpy()
    np.testing.assert_allclose(got, data[name], rtol=GOLDEN_RTOL[name], atol=0)


def test_prior_accepts_torch_and_returns_requested_dtype(golden):
    data, meta = golden
    baseline = bl.make_baseline("nn_knn", torch.from_numpy(data["train_locs"]),
                                torch.from_numpy(data["train_classes"]), meta["num_classes"], meta["hyper_params"])
    got = baseline.prior(torch.from_numpy(data["eval_locs"]))
    assert got.dtype == torch.float32 and got.device.type == "cpu" and got.shape == (41, 12)
    np.testing.assert_allclose(got.numpy(), data["nn_knn"], rtol=1e-6)


def _toy(num_train=400, num_eval=30, num_classes=5, seed=0):
    rng = np.random.default_rng(seed)
    train = np.column_stack([rng.uniform(-180, 180, num_train), rng.uniform(-80, 80, num_train)])
    classes = rng.integers(0, num_classes, num_train)
    evals = np.column_stack([rng.uniform(-180, 180, num_eval), rng.uniform(-80, 80, num_eval)])
    evals[[3, 11]] = np.nan
    evals[7, 1] = np.nan
    return train, classes, evals, num_classes


HP = {"num_neighbors": 25, "dist_type": "euclidean", "dist_thresh": 30.0, "gp_size": [12, 6], "pseudo_count": 2,
      "kde_dist_type": "euclidean", "kde_quant": 10.0, "kde_nb": 20}


@pytest.mark.parametrize("name", ["grid", "nn_knn", "nn_dist", "kde"])
def test_invalid_locations_get_uniform_prior(name):
    train, classes, evals, num_classes = _toy()
    prior = bl.make_baseline(name, train, classes, num_classes, HP).prior_numpy(evals)
    for row in (3, 7, 11):
        np.testing.assert_array_equal(prior[row], np.full(num_classes, 1 / num_classes))
    np.testing.assert_allclose(prior.sum(axis=1), 1.0)


def test_no_prior_is_ones_and_train_freq_ignores_location():
    train, classes, evals, num_classes = _toy()
    np.testing.assert_array_equal(bl.make_baseline("no_prior", train, classes, num_classes).prior_numpy(evals),
                                  np.ones((len(evals), num_classes)))
    freq = bl.make_baseline("train_freq", train, classes, num_classes).prior_numpy(evals)
    expected = (1 + np.bincount(classes, minlength=num_classes)) / (len(classes) + num_classes)
    np.testing.assert_allclose(freq, np.broadcast_to(expected, freq.shape))


def test_grid_handles_domain_edges():
    # Three training points in the last lon cell / last lat cell (lon = 180, lat = 90 included there).
    train = np.array([[180.0, 90.0], [179.0, 89.0], [-180.0, -90.0]])
    classes = np.array([1, 1, 0])
    grid = bl.make_baseline("grid", train, classes, 3, {"gp_size": [4, 2], "pseudo_count": 2})
    prior = grid.prior_numpy(np.array([[180.0, 90.0], [-180.0, -90.0], [0.0, 0.0]]))
    np.testing.assert_allclose(prior[0], np.array([1, 3, 1]) / 5)  # (n + 1) / (2 + 3)
    np.testing.assert_allclose(prior[1], np.array([2, 1, 1]) / 4)
    np.testing.assert_allclose(prior[2], np.full(3, 1 / 3))  # empty cell: pseudo-counts only
    pc1 = bl.make_baseline("grid", train, classes, 3, {"gp_size": [4, 2], "pseudo_count": 1})
    np.testing.assert_allclose(pc1.prior_numpy(np.array([[0.0, 0.0], [180.0, 90.0]])),
                               [[1 / 3] * 3, [0, 1, 0]])


def _haversine(a_latlon, b_latlon):
    dlat = a_latlon[:, 0] - b_latlon[0]
    dlon = a_latlon[:, 1] - b_latlon[1]
    inner = np.sin(dlat / 2) ** 2 + np.cos(a_latlon[:, 0]) * np.cos(b_latlon[0]) * np.sin(dlon / 2) ** 2
    return 2 * np.arcsin(np.sqrt(inner))


def _distances(points_lonlat, loc_lonlat, dist_type):
    """Brute-force distances on [lat, lon] (radians for haversine), one evaluation point at a time."""
    if dist_type == "haversine":
        return _haversine(np.deg2rad(points_lonlat[:, ::-1]), np.deg2rad(loc_lonlat[::-1]))
    return np.sqrt(((points_lonlat - loc_lonlat) ** 2).sum(axis=1))


def _reference_neighbor(train, classes, num_classes, loc, hp, knn):
    dist = _distances(train, loc, hp["dist_type"])
    chosen = np.argsort(dist)[:hp["num_neighbors"]] if knn else np.flatnonzero(dist <= hp["dist_thresh"])
    counts = 1.0 + np.bincount(classes[chosen], minlength=num_classes)
    return counts / counts.sum()


def _reference_kde(train, classes, num_classes, loc, hp):
    q = hp["kde_quant"]
    points = {}
    for (lon, lat), cls in zip(train, classes):
        key = (int(cls), math.floor(lon / q), math.floor(lat / q))
        points[key] = points.get(key, 0) + 1
    keys = np.array(list(points), dtype=float)
    counts = np.array(list(points.values()), dtype=float)
    dist = _distances(keys[:, 1:] * q, loc, hp["kde_dist_type"])
    h = 0.5 * np.sort(dist)[hp["kde_nb"] - 1]
    near = dist <= 2 * h + 1e-9
    kernel = np.exp(-dist[near] ** 2 / (2 * h ** 2)) / (2 * math.pi * h)
    dens = np.bincount(keys[near, 0].astype(int), counts[near] * kernel, minlength=num_classes)
    dens += dens[dens > 0].min()
    return dens / dens.sum()


@pytest.mark.parametrize("dist_type", ["euclidean", "haversine"])
@pytest.mark.parametrize("name", ["nn_knn", "nn_dist", "kde"])
def test_batched_equals_per_point_reference(name, dist_type, monkeypatch):
    monkeypatch.setattr(bl, "CHUNK_SIZE", 7)  # several chunks, the last one partial
    train, classes, evals, num_classes = _toy(seed=1)
    hp = dict(HP, dist_type=dist_type, kde_dist_type=dist_type)
    if dist_type == "haversine":
        hp["dist_thresh"] = 3000 / 6371.4
    got = bl.make_baseline(name, train, classes, num_classes, hp).prior_numpy(evals)
    for row, loc in enumerate(evals):
        if np.isnan(loc).any():
            continue
        if name == "kde":
            expected = _reference_kde(train, classes, num_classes, loc, hp)
        else:
            expected = _reference_neighbor(train, classes, num_classes, loc, hp, knn=name == "nn_knn")
        np.testing.assert_allclose(got[row], expected, rtol=1e-9, err_msg=f"row {row}")


def test_cross_val_hyper_params():
    assert bl.get_cross_val_hyper_params("inat_2018")["num_neighbors"] == 1500
    assert bl.get_cross_val_hyper_params("birdsnap", "orig_meta")["gp_size"] == [225, 60]
    assert bl.get_cross_val_hyper_params("yfcc")["dist_thresh"] == pytest.approx(2.0 / 6371.4)
    fmow = bl.get_cross_val_hyper_params("fmow")
    fmow["gp_size"].append(1)  # a copy: the module's table stays intact
    assert bl.get_cross_val_hyper_params("fmow")["gp_size"] == [45, 30]
    with pytest.raises(ValueError, match="known datasets: .*inat_2018"):
        bl.get_cross_val_hyper_params("imagenet")
    with pytest.raises(ValueError, match="meta_type ''.*ebird_meta or orig_meta"):
        bl.get_cross_val_hyper_params("birdsnap")


def test_log_headers():
    assert bl.BASELINE_NAMES == ("no_prior", "train_freq", "grid", "nn_knn", "nn_dist", "kde")
    assert bl.make_baseline("grid", [[0.0, 0.0]], [0], 2, HP).log_header == "\nDiscrete grid prior"


def test_errors():
    train, classes, evals, num_classes = _toy()
    with pytest.raises(ValueError, match="unknown baseline 'tang'.*no_prior, train_freq, grid, nn_knn, nn_dist"):
        bl.make_baseline("tang", train, classes, num_classes, HP)
    with pytest.raises(ValueError, match=r"kde_nb'\] = 700 .* only \d+ \(class, cell\) points in \d+ distinct "
                                         r"cells; lower kde_nb"):
        bl.make_baseline("kde", train, classes, num_classes, dict(HP, kde_nb=700))
    with pytest.raises(ValueError, match="num_neighbors'\\] = 500 but there are 400 training locations"):
        bl.make_baseline("nn_knn", train, classes, num_classes, dict(HP, num_neighbors=500))
    with pytest.raises(ValueError, match=r"needs hyper_params \['gp_size', 'pseudo_count'\]"):
        bl.make_baseline("grid", train, classes, num_classes)
    with pytest.raises(ValueError, match="dist_type'\\] = 'manhattan'"):
        bl.make_baseline("nn_dist", train, classes, num_classes, dict(HP, dist_type="manhattan"))
    with pytest.raises(ValueError, match=r"training locations has NaN coordinates in rows \[3, 7, 11\]"):
        bl.make_baseline("grid", evals, classes[:30], num_classes, HP)
    with pytest.raises(ValueError, match=r"rows \[1\] are outside lon"):
        bl.make_baseline("grid", train, classes, num_classes, HP).prior(np.array([[0.0, 0.0], [0.0, 95.0]]))
    with pytest.raises(ValueError, match=r"shape \(N, 2\)"):
        bl.make_baseline("grid", train, classes, num_classes, HP).prior(np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"classes must lie in \[0, 3\)"):
        bl.make_baseline("train_freq", train, classes, 3)
    with pytest.raises(ValueError, match="KDE bandwidth is 0"):
        stacked = np.zeros((50, 2))
        bl.make_baseline("kde", stacked, np.arange(50) % 5, 5, dict(HP, kde_nb=3)).prior(np.array([[0.0, 0.0]]))
