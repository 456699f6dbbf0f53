"""datasets.load_dataset: the bundle's files read as the original read them, and clear errors for bad input."""
import json
import logging
import shutil

import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from csp import arguments
from csp import data_arrays
from csp import datasets
from csp import evaluation

ALL = ("inat_2018", "inat_2017", "fmow", "birdsnap", "nabirds", "yfcc")
NUM_CLASSES, FEAT_DIM = 12, 8


def params_for(dataset, *flags):
    resolution = "pretrain" if dataset == "fmow" else "standard"
    return arguments.default_params(["--dataset", dataset, "--inat2018_resolution", resolution, *flags])


# ---------------------------------------------------------------------------------------------------------------
# a hand-written fmow folder: every value known

TRAIN = [  # id, lon, lat, user, date, class
    (10, 10.0, 20.0, 1, 0.1, 0),
    (11, None, None, 2, 0.2, 1),   # no location: invalid
    (12, -30.0, 40.0, None, 0.3, 2),  # no user: invalid
    (13, 100.0, -10.0, 3, None, 1),  # no date: valid (the original does not check dates here)
    (14, 50.0, 5.0, 4, 0.5, 2),
]
VAL = [(20, 1.0, 2.0, 7, 0.9, 2), (21, None, None, 8, 0.8, 0), (22, 3.0, 4.0, None, 0.7, 1)]


def write_fmow(root, train=TRAIN, val=VAL, num_classes=3, feat_rows=None):
    """Write fmow's files for the given entries; features row i = (i, 10 i), predictions row i = i / 10."""
    folder = root / "fmow"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "category.json").write_text(json.dumps({f"name{c}": c for c in range(num_classes)}))
    for split, entries in (("train", train), ("val", val)):
        images = [{"id": e[0], "file_name": f"{split}/{e[0]}.jpg"} for e in entries]
        annotations = [{"id": k, "image_id": e[0], "category_id": e[5]} for k, e in enumerate(entries[::-1])]
        locs = [{"id": e[0], "lon": e[1], "lat": e[2], "user_id": e[3], "date_c": e[4]} for e in entries[::-1]]
        (folder / f"{split}.json").write_text(json.dumps({"images": images, "annotations": annotations}))
        (folder / f"{split}_location.json").write_text(json.dumps(locs))
        rows = len(entries) if feat_rows is None else feat_rows
        feats = np.stack([np.arange(rows), 10 * np.arange(rows)], axis=1).astype(np.float32)
        (folder / "features_inception_pretrain").mkdir(exist_ok=True)
        np.save(folder / f"features_inception_pretrain/fmow_{split}_pretrain_net_feats.npy", feats)
        (folder / "feature_moco").mkdir(exist_ok=True)
        np.save(folder / f"feature_moco/fmow_{split}_preds.npy",
                np.repeat(np.arange(len(entries), dtype=np.float32)[:, None] / 10, num_classes, axis=1))
    return folder


@pytest.fixture
def fmow_root(tmp_path, monkeypatch):
    monkeypatch.setenv("CSP_DATA_DIR", str(tmp_path))
    write_fmow(tmp_path)
    return tmp_path


def test_training_split_drops_entries_without_location_or_user(fmow_root):
    data = datasets.load_dataset(params_for("fmow"), "val", True, True, True, True, True)
    train = data.train
    np.testing.assert_array_equal(train.inds, [0, 3, 4])
    np.testing.assert_array_equal(train.locs, np.float32([[10, 20], [100, -10], [50, 5]]))
    np.testing.assert_array_equal(train.classes, [0, 1, 2])
    np.testing.assert_array_equal(train.users, [1, 3, 4])
    np.testing.assert_array_equal(train.dates, np.float32([0.1, np.nan, 0.5]))
    np.testing.assert_array_equal(train.feats, np.float32([[0, 0], [3, 30], [4, 40]]))
    assert train.locs.dtype == np.float32 and train.classes.dtype == np.int64 and train.users.dtype == np.int64
    assert data.num_classes == 3 and data.classes == {0: "name0", 1: "name1", 2: "name2"}
    assert data.class_of_interest == 0


def test_evaluation_split_keeps_invalid_entries_with_nan_location(fmow_root):
    data = datasets.load_dataset(params_for("fmow"), "val", True, False, True, True)
    val = data.val
    np.testing.assert_array_equal(val.inds, [0, 1, 2])
    np.testing.assert_array_equal(val.locs, np.float32([[1, 2], [np.nan, np.nan], [3, 4]]))
    np.testing.assert_array_equal(val.users, [7, 8, -1])
    np.testing.assert_array_equal(val.classes, [2, 0, 1])
    np.testing.assert_array_equal(val.split_ids, [1, 1, 1])
    np.testing.assert_allclose(val.preds[:, 0], [0, 0.1, 0.2])
    np.testing.assert_array_equal(val.feats[:, 0], [0, 1, 2])
    assert isinstance(val.feats, np.memmap) and isinstance(val.preds, np.memmap)


def test_evaluation_split_with_invalid_removed_aligns_predictions(fmow_root):
    val = datasets.load_dataset(params_for("fmow"), "val", True, True, True).val
    np.testing.assert_array_equal(val.inds, [0])
    np.testing.assert_allclose(val.preds, np.zeros((1, 3)))
    assert val.feats is None and val.imgs is None


def test_image_names_follow_the_kept_rows(fmow_root):
    data = datasets.load_dataset(params_for("fmow", "--load_img", "T"), "val", True, False)
    np.testing.assert_array_equal(data.train.imgs, ["train/10.jpg", "train/13.jpg", "train/14.jpg"])
    np.testing.assert_array_equal(data.val.imgs, ["val/20.jpg", "val/21.jpg", "val/22.jpg"])


def test_feature_subset_is_read_in_chunks(fmow_root, monkeypatch):
    monkeypatch.setattr(data_arrays, "READ_CHUNK_BYTES", 8)  # one row per chunk
    train = datasets.load_dataset(params_for("fmow"), "val", True, True, load_cnn_features_train=True).train
    np.testing.assert_array_equal(train.feats, np.float32([[0, 0], [3, 30], [4, 40]]))


def test_feature_files_that_are_not_float32_are_cast(tmp_path, monkeypatch):
    monkeypatch.setenv("CSP_DATA_DIR", str(tmp_path))
    folder = write_fmow(tmp_path)
    path = folder / "features_inception_pretrain/fmow_train_pretrain_net_feats.npy"
    np.save(path, np.load(path).astype(np.float64))
    data = datasets.load_dataset(params_for("fmow"), "val", True, False, False, True, True)
    assert data.train.feats.dtype == np.float32
    np.testing.assert_array_equal(data.train.feats, np.float32([[0, 0], [3, 30], [4, 40]]))


# ---------------------------------------------------------------------------------------------------------------
# every layout, written by synthetic_data.py, checked against the files read independently here

@pytest.fixture(scope="module")
def synth_root(synthetic_data_dir):
    return synthetic_data_dir(*ALL, num_train=150, num_val=40, num_classes=NUM_CLASSES, feat_dim=FEAT_DIM, seed=3,
                              invalid_frac=0.1, fewshot_ratios=(0.05, 0.1))


def expected_entries(folder, dataset, split):
    """(classes, lon, lat, invalid) of every entry in file order, read without `datasets`."""
    if dataset == "yfcc":
        table = pd.read_csv(folder / "train_test_split.csv")
        table = table[table["split"] == split]
        return table["class"].to_numpy(), table["lon"].to_numpy(), table["lat"].to_numpy(), np.zeros(len(table), bool)
    if dataset in datasets.BIRD_FILES:
        entries = [e for e in json.loads((folder / datasets.BIRD_FILES[dataset]).read_text())[split]
                   if e["valid_image"]]
        meta = [e["ebird_meta"] for e in entries]
        invalid = [m["lon"] is None or m["user_id"] is None or m["date"] is None for m in meta]
        return ([e["class_id"] for e in entries], [m["lon"] for m in meta], [m["lat"] for m in meta], invalid)
    loc_name, ann_name = datasets.annotation_files(dataset, split)
    ann = json.loads((folder / ann_name).read_text())
    cls = {a["image_id"]: a["category_id"] for a in ann["annotations"]}
    loc = {e["id"]: e for e in json.loads((folder / loc_name).read_text())}
    ids = [im["id"] for im in ann["images"]]
    return ([cls[i] for i in ids], [loc[i]["lon"] for i in ids], [loc[i]["lat"] for i in ids],
            [loc[i]["lon"] is None or loc[i]["user_id"] is None for i in ids])


def dense(path):
    return sparse.load_npz(path).toarray() if path.suffix == ".npz" else np.load(path)


def as_float(values):
    return np.array(values, dtype=np.float64).astype(np.float32)


@pytest.mark.parametrize("dataset", ALL)
def test_every_layout_loads_aligned(synth_root, monkeypatch, dataset):
    monkeypatch.setenv("CSP_DATA_DIR", str(synth_root))
    params = params_for(dataset)
    data = datasets.load_dataset(params, "val", True, False, True, True, True)
    folder = synth_root / dataset
    for part, removed in ((data.train, True), (data.val, False)):
        classes, lon, lat, invalid = (np.asarray(a) for a in expected_entries(folder, dataset, part.name))
        assert invalid.any() == (dataset != "yfcc")
        keep = np.flatnonzero(~invalid) if removed else np.arange(len(classes))
        np.testing.assert_array_equal(part.inds, keep)
        np.testing.assert_array_equal(part.classes, classes[keep])
        np.testing.assert_array_equal(part.locs, np.stack([as_float(lon), as_float(lat)], 1)[keep])
        feats = np.load(folder / datasets.feature_file(dataset, part.name, params["inat2018_resolution"]))
        np.testing.assert_array_equal(part.feats, feats[keep])
        assert part.feats.shape[1] == FEAT_DIM
    assert np.isnan(data.val.locs[:, 0]).any() == (dataset != "yfcc")
    preds = dense(folder / datasets.prediction_file(dataset, "val"))
    np.testing.assert_array_equal(data.val.preds, preds.astype(np.float32))
    assert data.val.preds.shape == (len(data.val), NUM_CLASSES) and data.num_classes == NUM_CLASSES


def test_sparse_predictions_are_densified_and_indexed(synth_root, monkeypatch):
    monkeypatch.setenv("CSP_DATA_DIR", str(synth_root))
    val = datasets.load_dataset(params_for("inat_2018"), "val", True, True, True).val
    preds = sparse.load_npz(synth_root / "inat_2018/features_inception/inat2018_val_preds_sparse.npz")
    assert len(val) < preds.shape[0]
    np.testing.assert_array_equal(val.preds, preds.toarray()[val.inds])
    assert val.preds.dtype == np.float32 and not isinstance(val.preds, np.memmap)


@pytest.mark.parametrize("dataset, name", [
    ("inat_2018", "fewshot/inat2018_val_preds_sparse_ratio0.100.npz"),
    ("fmow", "fewshot/fmow_val_preds_ratio0.100.npy"),
])
def test_fewshot_predictions_follow_the_sample_ratio(synth_root, monkeypatch, dataset, name):
    monkeypatch.setenv("CSP_DATA_DIR", str(synth_root))
    params = params_for(dataset, "--cnn_pred_type", "fewshot", "--train_sample_ratio", "0.1")
    val = datasets.load_dataset(params, "val", True, False, True).val
    np.testing.assert_array_equal(val.preds, dense(synth_root / dataset / name).astype(np.float32))
    full = datasets.load_dataset(params_for(dataset), "val", True, False, True).val
    assert (val.preds.argmax(1) == val.classes).mean() < (full.preds.argmax(1) == full.classes).mean()


def test_missing_fewshot_predictions_name_the_ratio_and_the_ratios_there(synth_root, monkeypatch):
    """The hint was 'set CSP_DATA_DIR', although the data folder was right and only that ratio had no file."""
    monkeypatch.setenv("CSP_DATA_DIR", str(synth_root))
    params = params_for("fmow", "--cnn_pred_type", "fewshot", "--train_sample_ratio", "0.2")
    with pytest.raises(FileNotFoundError) as err:
        datasets.load_dataset(params, "val", True, False, True)
    message = str(err.value)
    for part in ("fmow_val_preds_ratio0.200.npy", "--train_sample_ratio 0.2", "--cnn_pred_type full",
                 "0.05, 0.1", str(synth_root / "fmow" / "fewshot")):
        assert part in message
    assert "CSP_DATA_DIR" not in message


def test_missing_fewshot_folder_says_the_data_has_no_fewshot_predictions(fmow_root):
    params = params_for("fmow", "--cnn_pred_type", "fewshot", "--train_sample_ratio", "0.05")
    with pytest.raises(FileNotFoundError, match=r"no few-shot image predictions .*--cnn_pred_type full"):
        datasets.load_dataset(params, "val", True, False, True)


def test_file_names_for_other_image_models_and_resolutions():
    assert datasets.prediction_file("inat_2018", "val", "fewshot", 0.05, cnn_model="resnet50") == \
        "fewshot-resnet50/inat2018_val_preds_sparse_ratio0.050.npz"
    assert datasets.feature_file("inat_2018", "train", "pretrain", "resnet50") == \
        "features_inception_pretrain-resnet50/inat2018_train_pretrain_net_feats.npy"
    assert datasets.feature_file("inat_2018", "val", "high_res") == "features_inception_hr/inat2018_val_net_feats.npy"
    assert datasets.prediction_file("inat_2018", "test", resolution="high_res") == \
        "features_inception_hr/inat2018_test_preds_sparse.npz"
    assert datasets.feature_file("inat_2017", "val", "pretrain") == \
        "features_inception_pretrain/inat2017_val_pretrain_net_feats.npy"
    assert datasets.feature_file("yfcc", "train") == "features_inception/YFCC_train_net_feats.npy"
    assert datasets.prediction_file("nabirds", "test") == "features_inception/nabirds_test_preds_sparse.npz"


@pytest.mark.parametrize("dataset", ["inat_2018", "inat_2017"])
def test_kaggle_public_private_split_of_the_test_set(synth_root, monkeypatch, dataset):
    monkeypatch.setenv("CSP_DATA_DIR", str(synth_root))
    data = datasets.load_dataset(params_for(dataset), "test", True, False, True)
    usage = pd.read_csv(synth_root / dataset / datasets.kaggle_file(dataset))["usage"].to_numpy()
    np.testing.assert_array_equal(data.val.split_ids, usage == "Private")
    assert data.val.split_ids.dtype == bool and data.train.split_ids.dtype == np.int64
    assert set(np.unique(data.val.split_ids)) == {0, 1} and data.val.name == "test"
    assert data.val.preds.shape[0] == len(usage)
    blocks = evaluation.summarize(np.ones(len(usage), np.int64), data.val.split_ids, "no_prior")["splits"]
    assert [(block["id"], block["name"]) for block in blocks] == [(0, "Public"), (1, "Private")]


@pytest.mark.parametrize("meta_type", ["orig_meta", "ebird_meta"])
def test_bird_meta_type_picks_the_metadata(synth_root, monkeypatch, meta_type):
    monkeypatch.setenv("CSP_DATA_DIR", str(synth_root))
    data = datasets.load_dataset(params_for("birdsnap", "--meta_type", meta_type), "test", True, False)
    entries = [e for e in json.loads((synth_root / "birdsnap" / datasets.BIRD_FILES["birdsnap"]).read_text())["train"]
               if e["valid_image"]]
    valid = [e[meta_type]["lon"] is not None and e[meta_type]["user_id"] is not None
             and e[meta_type]["date"] is not None for e in entries]
    np.testing.assert_array_equal(data.train.inds, np.flatnonzero(valid))


def test_yfcc_turns_off_dates_and_balanced_loader(synth_root, monkeypatch):
    monkeypatch.setenv("CSP_DATA_DIR", str(synth_root))
    params = params_for("yfcc")
    assert datasets.flags_from_data(params) == {"balanced_train_loader": False, "use_date_feats": False}
    data = datasets.load_dataset(params, "test", True, True, load_cnn_features_train=True)
    assert params == params_for("yfcc")  # the loader leaves the flags alone
    assert (data.train.users == -1).all() and (data.train.dates == 0).all() and data.class_of_interest == 9
    assert isinstance(data.train.feats, np.memmap)  # nothing dropped: no copy


# ---------------------------------------------------------------------------------------------------------------
# bad input

def test_missing_data_folder_names_dataset_key_and_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("CSP_DATA_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError) as err:
        datasets.load_dataset(params_for("inat_2018"), "val", True, True)
    message = str(err.value)
    for part in ("inat_2018", str(tmp_path / "inat_2018"), "CSP_DATA_DIR", "inat_2018_data_dir", "synthetic_data.py"):
        assert part in message


def test_missing_data_folder_given_relative_is_shown_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CSP_DATA_DIR", "walkdata")
    with pytest.raises(FileNotFoundError) as err:
        datasets.load_dataset(params_for("fmow"), "val", True, True)
    message = str(err.value)
    assert f"data folder {tmp_path / 'walkdata' / 'fmow'} does not exist" in message
    assert "CSP_DATA_DIR=walkdata is relative" in message


def test_missing_feature_file_is_named(fmow_root):
    (fmow_root / "fmow/features_inception_pretrain/fmow_train_pretrain_net_feats.npy").unlink()
    with pytest.raises(FileNotFoundError, match=r"fmow: train image features .*fmow_train_pretrain_net_feats\.npy "
                                                r"does not exist.*CSP_DATA_DIR.*fmow_data_dir"):
        datasets.load_dataset(params_for("fmow"), "val", True, True, load_cnn_features_train=True)


def test_missing_annotation_file_is_named(fmow_root):
    (fmow_root / "fmow/val.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"fmow: annotation file .*val\.json does not exist"):
        datasets.load_dataset(params_for("fmow"), "val", True, True)


def test_feature_rows_must_match_the_annotation_file(tmp_path, monkeypatch):
    monkeypatch.setenv("CSP_DATA_DIR", str(tmp_path))
    write_fmow(tmp_path, feat_rows=6)
    with pytest.raises(ValueError) as err:
        datasets.load_dataset(params_for("fmow"), "val", True, True, load_cnn_features_train=True)
    message = str(err.value)
    for part in ("fmow", "fmow_train_pretrain_net_feats.npy", "(6, 2)", "expected (5, F)", "train.json",
                 "fmow_data_dir"):
        assert part in message


def test_prediction_columns_must_match_the_classes(fmow_root):
    np.save(fmow_root / "fmow/feature_moco/fmow_val_preds.npy", np.zeros((3, 4), np.float32))
    with pytest.raises(ValueError, match=r"fmow_val_preds\.npy.*\(3, 4\); expected \(3, 3\)"):
        datasets.load_dataset(params_for("fmow"), "val", True, False, True)


def test_truncated_feature_file_is_reported(fmow_root, monkeypatch):
    path = fmow_root / "fmow/features_inception_pretrain/fmow_train_pretrain_net_feats.npy"
    path.write_bytes(path.read_bytes()[:-8])
    with pytest.raises(ValueError, match="truncated"):
        datasets.load_dataset(params_for("fmow"), "val", True, True, load_cnn_features_train=True)


def test_class_ids_outside_the_category_file(tmp_path, monkeypatch):
    monkeypatch.setenv("CSP_DATA_DIR", str(tmp_path))
    write_fmow(tmp_path, train=TRAIN[:4] + [(14, 50.0, 5.0, 4, 0.5, 7)])
    with pytest.raises(ValueError, match=r"fmow: .*train\.json.*1 train entries have class ids outside \[0, 3\) "
                                         r"\(e\.g\. 7\); category\.json names 3 classes"):
        datasets.load_dataset(params_for("fmow"), "val", True, True)


def test_bad_training_coordinates_are_counted_dropped_and_logged(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("CSP_DATA_DIR", str(tmp_path))
    train = TRAIN + [(15, 200.0, 0.0, 5, 0.1, 0), (16, 0.0, -91.0, 5, 0.1, 0), (17, 5.0, None, 5, 0.1, 0)]
    write_fmow(tmp_path, train=train)
    with caplog.at_level(logging.WARNING, logger="csp.datasets"):
        data = datasets.load_dataset(params_for("fmow"), "val", True, True, load_cnn_features_train=True)
    np.testing.assert_array_equal(data.train.inds, [0, 3, 4])
    np.testing.assert_array_equal(data.train.feats[:, 0], [0, 3, 4])
    assert "fmow train: dropped 3 entries with NaN or out-of-range coordinates" in caplog.text


def test_bad_evaluation_coordinates_become_unknown_locations(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("CSP_DATA_DIR", str(tmp_path))
    write_fmow(tmp_path, val=VAL + [(23, 181.0, 0.0, 1, 0.1, 0)])
    with caplog.at_level(logging.WARNING, logger="csp.datasets"):
        val = datasets.load_dataset(params_for("fmow"), "val", True, False).val
    assert len(val) == 4 and np.isnan(val.locs[3]).all()
    assert "fmow val: 1 entries with NaN or out-of-range coordinates" in caplog.text


def test_malformed_json_and_missing_keys(tmp_path, monkeypatch):
    monkeypatch.setenv("CSP_DATA_DIR", str(tmp_path))
    folder = write_fmow(tmp_path)
    (folder / "train_location.json").write_text(json.dumps([{"id": e[0], "lat": 1.0} for e in TRAIN]))
    with pytest.raises(ValueError, match=r"train_location\.json is malformed: an entry lacks 'lon'"):
        datasets.load_dataset(params_for("fmow"), "val", True, True)
    (folder / "train_location.json").write_text(json.dumps([{"id": e[0], "lon": "east", "lat": 1.0, "user_id": 1,
                                                             "date_c": 0.5} for e in TRAIN]))
    with pytest.raises(ValueError, match=r"train_location\.json is malformed: an entry lacks 'lon' or it is not a "
                                         r"number"):
        datasets.load_dataset(params_for("fmow"), "val", True, True)
    (folder / "train_location.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"train_location\.json is malformed: not JSON"):
        datasets.load_dataset(params_for("fmow"), "val", True, True)


def test_image_without_location_entry(tmp_path, monkeypatch):
    monkeypatch.setenv("CSP_DATA_DIR", str(tmp_path))
    folder = write_fmow(tmp_path)
    locs = json.loads((folder / "train_location.json").read_text())
    (folder / "train_location.json").write_text(json.dumps([e for e in locs if e["id"] != 13]))
    with pytest.raises(ValueError, match=r"1 image ids have no location entry, e\.g\. id 13"):
        datasets.load_dataset(params_for("fmow"), "val", True, True)


@pytest.mark.parametrize("dataset, flags, message", [
    ("fmow", ["--inat2018_resolution", "standard"], "fmow: image features exist only for --inat2018_resolution "
                                                     "pretrain"),
    ("inat_2017", ["--inat2018_resolution", "high_res"], "standard or pretrain"),
    ("birdsnap", ["--cnn_pred_type", "fewshot"], "exist only for inat_2018 and fmow"),
    ("inat_2018", ["--cnn_pred_type", "half"], "--cnn_pred_type 'half' is unknown; valid values: full, fewshot"),
    ("inat_2018", ["--inat2018_resolution", "low"], "--inat2018_resolution 'low' is unknown; valid values"),
])
def test_flag_combinations_without_files(synth_root, monkeypatch, dataset, flags, message):
    monkeypatch.setenv("CSP_DATA_DIR", str(synth_root))
    with pytest.raises(ValueError, match=message):
        datasets.load_dataset(arguments.default_params(["--dataset", dataset, *flags]), "val", True, True, True, True,
                              True)


def test_unknown_splits_and_datasets(synth_root, monkeypatch):
    monkeypatch.setenv("CSP_DATA_DIR", str(synth_root))
    with pytest.raises(ValueError, match="fmow: the bundle has no test split"):
        datasets.load_dataset(params_for("fmow"), "test", True, True)
    with pytest.raises(ValueError, match=r"birdsnap: .* has no split 'valid'; it has train, val, test"):
        datasets.load_dataset(params_for("birdsnap"), "valid", True, True)
    with pytest.raises(ValueError, match="--dataset 'syntconsband' is unknown; valid values"):
        datasets.load_dataset(arguments.default_params(["--dataset", "syntconsband"]), "val", True, True)


# ---------------------------------------------------------------------------------------------------------------
# bad input stops the run with one message naming the file (issue 9)

def copy_layout(synth_root, tmp_path, monkeypatch, dataset):
    """A private copy of one synthetic layout (the module's is shared), with CSP_DATA_DIR pointing at it."""
    shutil.copytree(synth_root / dataset, tmp_path / dataset)
    monkeypatch.setenv("CSP_DATA_DIR", str(tmp_path))
    return tmp_path / dataset


@pytest.mark.parametrize("dtype", [object, "U3"])
def test_feature_files_that_are_not_numbers_are_refused_before_reading(fmow_root, dtype):
    """dtype=object crashed the process (segmentation fault) when rows were dropped."""
    path = fmow_root / "fmow/features_inception_pretrain/fmow_train_pretrain_net_feats.npy"
    np.save(path, np.array([["a", "b"]] * len(TRAIN), dtype=dtype), allow_pickle=True)
    with pytest.raises(ValueError, match=rf"{path.name} is malformed: its values have dtype .*expected numbers"):
        datasets.load_dataset(params_for("fmow"), "val", True, True, load_cnn_features_train=True)


@pytest.mark.parametrize("what, value", [("features", np.nan), ("predictions", np.inf)])
def test_non_finite_features_and_predictions_name_the_file_and_first_rows(fmow_root, what, value):
    folder = fmow_root / "fmow"
    if what == "features":
        path = folder / "features_inception_pretrain/fmow_train_pretrain_net_feats.npy"
        kwargs = {"load_cnn_features_train": True}
    else:
        path = folder / "feature_moco/fmow_val_preds.npy"
        kwargs = {"load_cnn_predictions": True}
    array = np.load(path)
    array[2:, 0] = value
    np.save(path, array)
    with pytest.raises(ValueError, match=rf"{path.name} is malformed: .*{what} hold NaN or infinite values, first in "
                                         r"file rows (3, 4|2)\b"):
        datasets.load_dataset(params_for("fmow"), "val", True, what == "features", **kwargs)


@pytest.mark.parametrize("dataset, file, content, message", [
    ("fmow", "category.json", json.dumps(["a", "b"]), "category.json is malformed: expected a JSON object"),
    ("fmow", "category.json", json.dumps({"a": "zero"}), "category.json is malformed: expected a JSON object"),
    ("birdsnap", "birdsnap_with_loc_2019.json", json.dumps({"train": []}), "expected a JSON object with a 'classes'"),
    ("inat_2018", "categories2018.json", json.dumps({"id": 1}), "categories2018.json is malformed: expected a JSON list"),
    ("yfcc", "class_names.csv", "name\nfox\n", r"class_names.csv is malformed: missing columns \['id'\]"),
    ("yfcc", "train_test_split.csv", "", r"train_test_split.csv is malformed: not a CSV table"),
    ("yfcc", "train_test_split.csv", "lon,lat,class,split\n", r"train_test_split.csv is malformed: no rows"),
    ("yfcc", "train_test_split.csv", "lon,lat,class,split\n1,2,0,train\neast,2,0,train\n",
     r"column 'lon' holds 1 values that are not numbers, e\.g\. 'east' in data row 2"),
])
def test_malformed_metadata_is_named(synth_root, tmp_path, monkeypatch, dataset, file, content, message):
    folder = copy_layout(synth_root, tmp_path, monkeypatch, dataset)
    (folder / file).write_text(content)
    with pytest.raises(ValueError, match=message):
        datasets.load_dataset(params_for(dataset), "val" if dataset != "yfcc" else "test", True, True)


def test_a_repeated_image_id_or_conflicting_annotations_are_named(tmp_path, monkeypatch):
    """They silently took the last entry."""
    monkeypatch.setenv("CSP_DATA_DIR", str(tmp_path))
    folder = write_fmow(tmp_path)
    ann = json.loads((folder / "train.json").read_text())
    ann["annotations"].append({"id": 99, "image_id": 13, "category_id": 0})
    (folder / "train.json").write_text(json.dumps(ann))
    with pytest.raises(ValueError, match=r"train\.json is malformed: 1 image ids have conflicting annotation entries, "
                                         r"e\.g\. 13"):
        datasets.load_dataset(params_for("fmow"), "val", True, True)
    ann["annotations"].pop()
    ann["images"].append({"id": 10, "file_name": "again.jpg"})
    (folder / "train.json").write_text(json.dumps(ann))
    with pytest.raises(ValueError, match=r"train\.json is malformed: 1 image ids occur more than once, e\.g\. 10"):
        datasets.load_dataset(params_for("fmow"), "val", True, True)


def test_conflicting_location_entries_are_named_but_identical_repeats_are_harmless(fmow_root):
    folder = fmow_root / "fmow"
    locs = json.loads((folder / "train_location.json").read_text())
    (folder / "train_location.json").write_text(json.dumps(locs + [locs[0]]))
    assert len(datasets.load_dataset(params_for("fmow"), "val", True, True).train) == 3
    (folder / "train_location.json").write_text(json.dumps(locs + [{**locs[0], "lat": 1.5}]))
    with pytest.raises(ValueError, match=rf"train_location\.json is malformed: 1 image ids have conflicting location "
                                         rf"entries, e\.g\. {locs[0]['id']}"):
        datasets.load_dataset(params_for("fmow"), "val", True, True)


@pytest.mark.parametrize("dataset, file", [("fmow", "train_location.json"), ("inat_2018", "train2018_locations.json")])
def test_swapped_lon_lat_columns_stop_the_run_naming_the_location_file(synth_root, tmp_path, monkeypatch, dataset,
                                                                       file):
    folder = copy_layout(synth_root, tmp_path, monkeypatch, dataset)
    locs = json.loads((folder / file).read_text())
    for entry in locs:
        entry["lon"], entry["lat"] = entry["lat"], entry["lon"]
    (folder / file).write_text(json.dumps(locs))
    with pytest.raises(ValueError, match=rf"{file} is malformed: .* look swapped"):
        datasets.load_dataset(params_for(dataset), "val", True, True)


def test_the_out_of_range_warning_names_the_location_file(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("CSP_DATA_DIR", str(tmp_path))
    write_fmow(tmp_path, train=TRAIN + [(15, 200.0, 0.0, 5, 0.1, 0)])
    with caplog.at_level(logging.WARNING, logger="csp.datasets"):
        datasets.load_dataset(params_for("fmow"), "val", True, True)
    assert "train_location.json" in caplog.text and "train.json" not in caplog.text


def test_original_rows_translate_the_original_code_s_positions(tmp_path, monkeypatch):
    """The original drops only rows without longitude or user: entries 0, 3, 4, 5 (lat 95) and 6 are its rows
    0..4; this project drops entry 5 too."""
    monkeypatch.setenv("CSP_DATA_DIR", str(tmp_path))
    write_fmow(tmp_path, train=TRAIN + [(15, 5.0, 95.0, 5, 0.1, 0), (16, 6.0, 6.0, 6, 0.1, 1)])
    train = datasets.load_dataset(params_for("fmow"), "val", True, True).train
    np.testing.assert_array_equal(train.original_rows, [0, 1, 2, -1, 3])
    np.testing.assert_array_equal(train.from_original([4, 3, 0]), [3, -1, 0])
    np.testing.assert_array_equal(train.to_original([0, 3]), [0, 4])
    with pytest.raises(ValueError, match="position 5 is outside the original code's 5 train rows"):
        train.from_original([5])


@pytest.mark.parametrize("dataset, file", [("fmow", "train_location.json"), ("nabirds", "nabirds_with_loc_2019.json"),
                                           ("yfcc", "train_test_split.csv")])
def test_longitudes_in_0_to_360_stop_the_run_with_the_conversion(synth_root, tmp_path, monkeypatch, dataset, file):
    """The bundle's layouts with longitudes in 0..360 trained on the rows that stayed in range, with a warning."""
    folder = copy_layout(synth_root, tmp_path, monkeypatch, dataset)
    path = folder / file
    if file.endswith(".csv"):
        table = pd.read_csv(path)
        table["lon"] %= 360
        table.to_csv(path, index=False)
    else:
        content = json.loads(path.read_text())
        for entry in content if isinstance(content, list) else (e["ebird_meta"] for e in content["train"]):
            if entry["lon"] is not None:
                entry["lon"] %= 360
        path.write_text(json.dumps(content))
    with pytest.raises(ValueError, match=rf"{file} is malformed: \d+ of its \d+ train longitudes are in \(180, 360\]: "
                                         rf"they look like degrees east in 0\.\.360.*subtract 360 from those above 180"):
        datasets.load_dataset(params_for(dataset), "val" if dataset != "yfcc" else "test", True, True)
