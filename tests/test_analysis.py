import numpy as np
import pytest
import torch

from csp import analysis

# Hand-checked toy: band [-90, -80) holds sample 0, [-80, -70) samples 1-2 (-80 is a lower edge), the last band
# [80, 90] samples 3-4 (lat = 90 included), sample 5 has no location.
LOCS = np.array([[0.0, -85.0], [10.0, -80.0], [20.0, -75.0], [30.0, 85.0], [40.0, 90.0], [np.nan, np.nan]])
D_MRR = np.array([0.5, -0.25, 0.75, 0.0, 1.0, 9.0])


def test_mrr():
    assert analysis.mrr(np.array([1, 2, 4])) == pytest.approx((1 + 0.5 + 0.25) / 3)
    assert analysis.mrr(torch.tensor([1, 1])) == 1.0


def test_mrr_by_lat_default_bands():
    table = analysis.compute_mrr_by_lat(LOCS, D_MRR)
    assert len(table) == 18 and table.attrs["num_nan_locs"] == 1 and table.attrs["num_outside"] == 0
    assert table["lat_center"].tolist() == list(np.arange(-85.0, 90.0, 10.0))
    filled = table[table["count"] > 0]
    assert filled.index.tolist() == [0, 1, 17]
    assert filled["count"].tolist() == [1, 2, 2]
    np.testing.assert_allclose(filled["mean_d_mrr"], [0.5, 0.25, 0.5])
    np.testing.assert_allclose(filled["frac_positive"], [1.0, 0.5, 0.5])  # 0.0 is not positive
    empty = table[table["count"] == 0]
    assert empty["mean_d_mrr"].isna().all() and empty["frac_positive"].isna().all()
    negative = analysis.compute_mrr_by_lat(LOCS, D_MRR, do_positive=False)
    np.testing.assert_allclose(negative.loc[[0, 1, 17], "frac_negative"], [0.0, 0.5, 0.0])


def test_mrr_by_lat_custom_intervals():
    table = analysis.compute_mrr_by_lat(LOCS, D_MRR, intervals=[-90, -80, 0])
    assert table[["lat_min", "lat_max", "count"]].values.tolist() == [[-90, -80, 1], [-80, 0, 2]]
    assert table.attrs["num_outside"] == 2
    np.testing.assert_allclose(table["mean_d_mrr"], [0.5, 0.25])
    four = analysis.compute_mrr_by_lat(LOCS, D_MRR, num_interval=4)
    assert four["count"].tolist() == [3, 0, 0, 2]


def test_mrr_by_latlongrid():
    table = analysis.compute_mrr_by_latlongrid(LOCS, D_MRR, lat_intervals=[-90, 0, 90], lon_intervals=[0, 20, 40])
    boxes = table[["lon_min", "lon_max", "lat_min", "lat_max"]].values.tolist()
    assert boxes == [[0, 20, 0, 90], [20, 40, 0, 90], [0, 20, -90, 0], [20, 40, -90, 0]]  # north first
    assert table["count"].tolist() == [0, 2, 2, 1]
    np.testing.assert_allclose(table["mean_d_mrr"], [np.nan, 0.5, 0.125, 0.75])
    assert table.attrs["num_nan_locs"] == 1
    assert len(analysis.compute_mrr_by_latlongrid(LOCS, D_MRR)) == 18 * 36


def test_compare_models(tmp_path):
    ranks_a = np.array([1, 2, 1, 4, 1, 1])
    ranks_b = torch.tensor([2, 1, 4, 4, 1, 2])
    tables = analysis.compare_models(LOCS, ranks_a, ranks_b, names=("csp", "nn_knn"))
    summary = tables["mrr"]
    assert summary["model"].tolist() == ["csp", "nn_knn"] and summary["num_samples"].tolist() == [6, 6]
    np.testing.assert_allclose(summary["mrr"], [4.75 / 6, 3.5 / 6])
    by_lat = tables["by_lat"]
    np.testing.assert_allclose(by_lat.loc[[0, 1, 17], "mean_d_mrr"], [0.5, 0.125, 0.0])
    assert tables["by_latlon"]["count"].sum() == 5
    by_lat.to_csv(tmp_path / "by_lat.csv", index=False)
    assert (tmp_path / "by_lat.csv").read_text().startswith("lat_min,lat_max,lat_center,count,mean_d_mrr")


def test_errors():
    with pytest.raises(ValueError, match="ranks must be finite and >= 1"):
        analysis.mrr([0, 1])
    with pytest.raises(ValueError, match="ranks_a has 6 samples but ranks_b has 2"):
        analysis.compare_models(LOCS, np.ones(6), np.ones(2))
    with pytest.raises(ValueError, match="6 locations but 5 per-sample values"):
        analysis.compute_mrr_by_lat(LOCS, D_MRR[:5])
    with pytest.raises(ValueError, match="intervals must be at least two strictly increasing"):
        analysis.compute_mrr_by_lat(LOCS, D_MRR, intervals=[0, 0, 10])
    with pytest.raises(ValueError, match=r"shape \(N, 2\)"):
        analysis.compute_mrr_by_lat(LOCS[:, :1], D_MRR)
