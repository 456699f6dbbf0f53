"""synthetic_data: the bundle's layout at any size, with data on which a location prior helps."""
import json

import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from csp import arguments
from csp import datasets
from csp import synthetic_data


def test_inat_2018_layout_with_invalid_entries_and_sparse_predictions(tmp_path):
    root = synthetic_data.write_synthetic_dataset("inat_2018", tmp_path, num_train=200, num_val=50, num_test=30,
                                                  num_classes=9, feat_dim=5, seed=1, invalid_frac=0.1)
    assert root == tmp_path / "inat_2018"
    locs = json.loads((root / "train2018_locations.json").read_text())
    assert len(locs) == 200 and any(e["lon"] is None and e["lat"] is None for e in locs)
    assert any(e["user_id"] is None for e in locs)
    assert len(json.loads((root / "categories2018.json").read_text())) == 9
    for split, rows in (("train", 200), ("val", 50), ("test", 30)):
        feats = np.load(root / datasets.feature_file("inat_2018", split, "pretrain"))
        assert feats.shape == (rows, 5) and feats.dtype == np.float32
        for resolution in ("standard", "high_res"):
            assert (root / datasets.feature_file("inat_2018", split, resolution)).resolve() == \
                (root / datasets.feature_file("inat_2018", split, "pretrain")).resolve()
    preds = sparse.load_npz(root / "features_inception/inat2018_val_preds_sparse.npz")
    assert preds.shape == (50, 9) and preds.nnz == 50 * 5
    np.testing.assert_allclose(preds.sum(axis=1), 1, rtol=1e-5)
    assert sparse.load_npz(root / "fewshot/inat2018_test_preds_sparse_ratio0.050.npz").shape == (30, 9)
    assert (root / "kaggle_solution_2018_DO_NOT_SHARE.csv").is_file()


def test_fmow_layout_with_dense_predictions(tmp_path):
    root = synthetic_data.write_synthetic_dataset("fmow", tmp_path, num_train=100, num_val=40, feat_dim=3,
                                                  fewshot_ratios=(0.05, 0.2))
    assert json.loads((root / "category.json").read_text())["class_0061"] == 61
    preds = np.load(root / "feature_moco/fmow_val_preds.npy")
    assert preds.shape == (40, 62) and preds.dtype == np.float32
    np.testing.assert_allclose(preds.sum(axis=1), 1, rtol=1e-4)
    assert np.load(root / "fewshot/fmow_val_preds_ratio0.200.npy").shape == (40, 62)
    assert not (root / "test.json").exists()


def test_bird_layout_marks_missing_images_and_metadata(tmp_path):
    root = synthetic_data.write_synthetic_dataset("nabirds", tmp_path, num_train=300, num_val=20, num_classes=4,
                                                  feat_dim=2, invalid_frac=0.1)
    data = json.loads((root / "nabirds_with_loc_2019.json").read_text())
    assert set(data) == {"train", "val", "test", "classes", "info"} and len(data["classes"]) == 4
    train = data["train"]
    valid = [e for e in train if e["valid_image"]]
    assert 0 < len(train) - len(valid)
    assert np.load(root / "features_inception/nabirds_train_net_feats.npy").shape == (len(valid), 2)
    assert sum(e["orig_meta"]["lon"] is None for e in train) > sum(e["ebird_meta"]["lon"] is None for e in train)


def test_same_seed_same_files(tmp_path):
    for name in ("a", "b"):
        synthetic_data.write_synthetic_dataset("yfcc", tmp_path / name, num_train=50, num_val=10, feat_dim=4, seed=9)
    for rel in ("train_test_split.csv", "features_inception/YFCC_train_net_feats.npy",
                "features_inception/YFCC_test_preds.npy"):
        assert (tmp_path / "a/yfcc" / rel).read_bytes() == (tmp_path / "b/yfcc" / rel).read_bytes()


def test_a_location_prior_helps_the_imperfect_classifier(tmp_path, monkeypatch):
    synthetic_data.write_synthetic_dataset("fmow", tmp_path, num_train=3000, num_val=600, feat_dim=4,
                                           invalid_frac=0.0)
    monkeypatch.setenv("CSP_DATA_DIR", str(tmp_path))
    params = arguments.default_params(["--dataset", "fmow", "--inat2018_resolution", "pretrain"])
    data = datasets.load_dataset(params, "val", True, True, True)

    def unit(lonlat):
        lon, lat = np.radians(lonlat[:, 0]), np.radians(lonlat[:, 1])
        return np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], axis=1)

    kernel = np.exp(30 * (unit(data.val.locs) @ unit(data.train.locs).T - 1))
    prior = kernel @ np.eye(data.num_classes)[data.train.classes] + 1e-3
    image_acc = (data.val.preds.argmax(1) == data.val.classes).mean()
    combined_acc = ((data.val.preds * prior).argmax(1) == data.val.classes).mean()
    assert 0.5 < image_acc < 0.8
    assert combined_acc > image_acc + 0.15


def test_class_features_separate_classes(tmp_path):
    root = synthetic_data.write_synthetic_dataset("yfcc", tmp_path, num_train=400, num_val=100, num_classes=10,
                                                  feat_dim=64, seed=2)
    table = pd.read_csv(root / "train_test_split.csv")
    labels = {s: table[table["split"] == s]["class"].to_numpy() for s in ("train", "val")}
    train = np.load(root / "features_inception/YFCC_train_net_feats.npy")
    val = np.load(root / "features_inception/YFCC_val_net_feats.npy")
    means = np.stack([train[labels["train"] == c].mean(0) for c in range(10)])
    nearest = ((val[:, None, :] - means[None]) ** 2).sum(-1).argmin(1)
    assert (nearest == labels["val"]).mean() > 0.9


def test_command_line(tmp_path):
    synthetic_data.main(["--dataset", "birdsnap", "--out", str(tmp_path), "--num_train", "30", "--num_val", "10",
                         "--num_test", "0", "--num_classes", "3", "--feat_dim", "2"])
    data = json.loads((tmp_path / "birdsnap/birdsnap_with_loc_2019.json").read_text())
    assert len(data["train"]) == 30 and "test" not in data


def test_bad_arguments():
    with pytest.raises(ValueError, match="--dataset must be one of"):
        synthetic_data.write_synthetic_dataset("syntconsband", "/nonexistent")
    with pytest.raises(ValueError, match="at least 1"):
        synthetic_data.write_synthetic_dataset("fmow", "/nonexistent", num_train=0)
