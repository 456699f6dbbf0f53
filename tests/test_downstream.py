"""Downstream evaluation: GeoCLIP's encoder against GeoCLIP's own module, SatCLIP-format checkpoints, the spatial
splits, the real tasks, the probes on small data, the command and its bad input."""
import importlib
import importlib.machinery
import importlib.util
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.special import sph_harm_y

from csp import arguments
from csp import checkpoints
from csp import downstream
from csp import downstream_tasks
from csp import geoclip
from csp import models
from csp import satclip
from csp import spatial_splits

ROOT = Path(__file__).resolve().parents[1]


def sphere_points(count, seed=0):
    rng = np.random.default_rng(seed)
    return np.stack([rng.uniform(-180, 180, count), np.degrees(np.arcsin(rng.uniform(-1, 1, count)))], 1)


def haversine_km(a, b):
    lon1, lat1, lon2, lat2 = (np.radians(v) for v in (a[:, None, 0], a[:, None, 1], b[None, :, 0], b[None, :, 1]))
    h = np.sin((lat2 - lat1) / 2) ** 2 + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    return 2 * spatial_splits.EARTH_RADIUS_KM * np.arcsin(np.sqrt(h))


# ---------------------------------------------------------------------------------------------------------------
# GeoCLIP and SatCLIP

def geoclip_own_module():
    """GeoCLIP's LocationEncoder class, from its module file (the package's __init__ imports transformers)."""
    spec = importlib.util.find_spec("geoclip")
    if spec is None:
        pytest.skip("the geoclip wheel is not installed (pip install --no-deps geoclip)")
    package = importlib.util.module_from_spec(importlib.machinery.ModuleSpec("_geoclip_model", None,
                                                                             is_package=True))
    package.__path__ = [str(Path(list(spec.submodule_search_locations)[0]) / "model")]
    sys.modules["_geoclip_model"] = package
    return importlib.import_module("_geoclip_model.location_encoder").LocationEncoder


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
def test_geoclip_equals_geoclip_s_own_module_with_lon_lat_swapped():
    theirs = geoclip_own_module()().eval()
    ours = geoclip.load_geoclip()
    points = torch.as_tensor(np.concatenate([sphere_points(500), [[180, 0], [-180, 0], [0, 90], [0, -90]]]),
                             dtype=torch.float32)
    with torch.no_grad():
        expected = theirs(points[:, [1, 0]])
        got = ours(points)
    assert got.shape == (len(points), 512)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_geoclip_loads_from_a_path_and_refuses_other_files(tmp_path):
    """A weight file in GeoCLIP's key names (here from a randomly initialised encoder) loads from its path."""
    source = geoclip.GeoCLIPLocationEncoder()
    theirs = {"frequencies": "capsule.0.b", "mlp.0.": "capsule.1.", "mlp.2.": "capsule.3.", "mlp.4.": "capsule.5.",
              "mlp.6.": "head.0."}
    state = {}
    for key, value in source.state_dict().items():
        _, branch, rest = key.split(".", 2)
        for ours, name in theirs.items():
            rest = rest.replace(ours, name)
        state[f"LocEnc{branch}.{rest}"] = value
    torch.save(state, tmp_path / "weights.pth")
    points = torch.as_tensor(sphere_points(50), dtype=torch.float32)
    with torch.no_grad():
        torch.testing.assert_close(geoclip.load_geoclip(tmp_path / "weights.pth")(points), source(points))
    del state["LocEnc2.head.0.bias"]
    torch.save(state, tmp_path / "partial.pth")
    with pytest.raises(ValueError, match="do not fit GeoCLIP"):
        geoclip.load_geoclip(tmp_path / "partial.pth")
    torch.save({"weight": torch.zeros(2)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="not a GeoCLIP location-encoder weight file"):
        geoclip.load_geoclip(tmp_path / "other.pth")


def satclip_reference(lonlat, degrees, calculation, layers):
    """SatCLIP's encoding from its definition (scipy's harmonics at theta = lat + 90, phi = lon + 180; the
    analytic tables' pi on m = 0 and (-1)^m otherwise), then the SIREN by hand, in float64."""
    theta, phi = np.radians(lonlat[:, 1] + 90), np.radians(lonlat[:, 0] + 180)
    columns = []
    for l in range(degrees):
        for m in range(-l, l + 1):
            y = sph_harm_y(l, abs(m), theta, phi)
            value = y.real if m == 0 else math.sqrt(2) * (y.real if m > 0 else y.imag)
            if calculation == "analytic":
                value = value * (math.pi if m == 0 else (-1.0) ** m)
            columns.append(value)
    x = np.stack(columns, 1)
    for index, (weight, bias) in enumerate(layers[:-1]):
        x = np.sin((30.0 if index == 0 else 1.0) * (x @ weight.T + bias))
    return x @ layers[-1][0].T + layers[-1][1]


@pytest.mark.parametrize("calculation", ["analytic", "closed-form"])
def test_a_satclip_checkpoint_gives_satclip_s_embedding(tmp_path, calculation):
    degrees, width, out = 5, 16, 8
    rng = np.random.default_rng(1)
    shapes = [(width, degrees ** 2), (width, width), (out, width)]
    layers = [(rng.uniform(-0.2, 0.2, shape), rng.uniform(-0.2, 0.2, shape[0])) for shape in shapes]
    names = ["layers.0", "layers.1", "last_layer"]
    state = {f"model.location.nnet.{name}.{part}": torch.tensor(value, dtype=torch.float64)
             for name, layer in zip(names, layers) for part, value in zip(("weight", "bias"), layer)}
    state.update({key.replace("model.location.", "model."): value for key, value in state.items()})
    state["model.logit_scale"] = torch.tensor(2.6)
    hyper = {"le_type": "sphericalharmonics", "pe_type": "siren", "legendre_polys": degrees, "embed_dim": out,
             "capacity": width, "num_hidden_layers": 2, "harmonics_calculation": calculation, "frequency_num": 16}
    torch.save({"hyper_parameters": hyper, "state_dict": state, "epoch": 3}, tmp_path / "satclip.ckpt")
    points = sphere_points(200, seed=2)
    model = downstream.load_checkpoint_encoder(tmp_path / "satclip.ckpt")
    with torch.no_grad():
        got = model(torch.as_tensor(points, dtype=torch.float32)).numpy()
    np.testing.assert_allclose(got, satclip_reference(points, degrees, calculation, layers), atol=2e-4, rtol=0)
    torch.save({"hyper_parameters": {**hyper, "pe_type": "mlp"}, "state_dict": state}, tmp_path / "mlp.ckpt")
    with pytest.raises(ValueError, match="pe_type = 'mlp'; only SatCLIP's siren"):
        satclip.load_satclip(tmp_path / "mlp.ckpt")
    torch.save({"hyper_parameters": {**hyper, "legendre_polys": 6}, "state_dict": state}, tmp_path / "l6.ckpt")
    with pytest.raises(ValueError, match="do not fit its hyper_parameters"):
        satclip.load_satclip(tmp_path / "l6.ckpt")


# ---------------------------------------------------------------------------------------------------------------
# splits

@pytest.mark.parametrize("method", ["spatial_block", "buffered"])
def test_spatial_blocks_are_disjoint_between_train_and_test(method):
    points = sphere_points(1500)
    folds = spatial_splits.fold_indices(points, method, 5, seed=0, block_deg=15, buffer_km=300)
    cells = spatial_splits.block_ids(points, 15)
    tested = np.concatenate([test for _, test in folds])
    assert sorted(tested.tolist()) == list(range(len(points)))  # every point is tested once
    for train, test in folds:
        assert not set(cells[train]) & set(cells[test])
    if method == "buffered":
        for train, test in folds:
            assert haversine_km(points[train], points[test]).min() >= 300
        blocks = spatial_splits.fold_indices(points, "spatial_block", 5, seed=0, block_deg=15)
        dropped = sum(len(a) - len(b) for (a, _), (b, _) in zip(blocks, folds))
        assert dropped > 0


def test_random_folds_partition_and_depend_on_the_seed():
    points = sphere_points(100)
    folds = spatial_splits.fold_indices(points, "random", 4, seed=0)
    assert sorted(np.concatenate([test for _, test in folds]).tolist()) == list(range(100))
    assert all(len(set(train) & set(test)) == 0 for train, test in folds)
    other = spatial_splits.fold_indices(points, "random", 4, seed=1)
    assert not np.array_equal(folds[0][1], other[0][1])


def test_block_holdout_takes_whole_cells():
    points = sphere_points(2000)
    held = spatial_splits.block_holdout(points, 0.2, 10.0, np.random.default_rng(0))
    cells = spatial_splits.block_ids(points, 10.0)
    assert not set(cells[held]) & set(cells[~held])
    assert 0.2 <= held.mean() < 0.25


@pytest.mark.parametrize("call, message", [
    (lambda p: spatial_splits.fold_indices(p, "checkerboard", 5, 0), "--split_method must be one of"),
    (lambda p: spatial_splits.fold_indices(p, "random", 1, 0), "--folds must be an integer of at least 2"),
    (lambda p: spatial_splits.fold_indices(p[:3], "random", 5, 0), "3 points cannot make 5 folds"),
    (lambda p: spatial_splits.fold_indices(p, "spatial_block", 5, 0, block_deg=180), "fewer than --folds 5"),
    (lambda p: spatial_splits.fold_indices(p, "buffered", 5, 0, buffer_km=0), "needs --buffer_km > 0"),
    (lambda p: spatial_splits.block_ids(p, 0), r"--block_deg must be between 1e-06 and 180 degrees"),
    (lambda p: spatial_splits.block_ids(p, 1e-20), r"--block_deg must be between 1e-06 and 180 degrees"),
    (lambda p: spatial_splits.block_ids(p, math.inf), r"--block_deg must be between .* got inf"),
    (lambda p: spatial_splits.block_ids(p, math.nan), r"--block_deg must be between .* got nan"),
    (lambda p: spatial_splits.block_holdout(p[:1].repeat(5, 0), 0.2, 10, np.random.default_rng(0)),
     "fall into 1 cell of --block_deg 10 degrees; a spatial_block split needs at least 2 cells"),
])
def test_bad_split_settings_are_named(call, message):
    with pytest.raises(ValueError, match=message):
        call(sphere_points(50))


def test_block_holdout_never_holds_out_every_cell():
    """Two cells, one of 2 points: a 20 % hold-out takes one and leaves the other to train on."""
    points = np.array([[5.0, 5.0]] * 2 + [[25.0, 5.0]] * 8)
    for seed in range(10):
        held = spatial_splits.block_holdout(points, 0.2, 10.0, np.random.default_rng(seed))
        assert 0 < held.sum() < len(points)


# ---------------------------------------------------------------------------------------------------------------
# tasks

@pytest.mark.parametrize("name", list(downstream_tasks.TASKS))
def test_real_tasks_are_reproducible_and_on_land_where_they_say(name):
    task = downstream_tasks.build_task(name, 300, seed=4, min_class_count=3)
    again = downstream_tasks.build_task(name, 300, seed=4, min_class_count=3)
    np.testing.assert_array_equal(task.lonlat, again.lonlat)
    np.testing.assert_array_equal(task.target, again.target)
    assert task.lonlat.shape == (len(task.target), 2) and 0.6 * 300 <= len(task.target) <= 300
    assert (np.abs(task.lonlat[:, 0]) <= 180).all() and (np.abs(task.lonlat[:, 1]) <= 90).all()
    if name in ("land_cover", "country", "elevation"):
        assert (task.lonlat[:, 1] >= -60).all()
        cover = downstream_tasks.demo_data.land_cover_at(downstream_tasks.demo_data.load_land_cover(), task.lonlat)
        assert np.isin(cover, list(downstream_tasks.demo_data.IGBP_CLASSES)).all()
    if task.kind == "class":
        assert task.target.min() == 0 and task.target.max() == len(task.class_names) - 1
    if name == "land_ocean":
        land = task.target == task.class_names.index("land")
        assert set(task.class_names) == {"land", "ocean"} and 0.2 < land.mean() < 0.45
    if name == "elevation":
        assert -450 <= task.target.min() and task.target.max() < 7000 and task.unit == "m"
    if name == "country":
        assert {"US", "RU", "CN", "BR"} <= set(task.class_names)


# ---------------------------------------------------------------------------------------------------------------
# probes and the command

def test_probes_learn_a_task_of_place_and_not_of_noise():
    points = sphere_points(600, seed=5)
    east = downstream_tasks.Task("east", "class", points, (points[:, 0] > 0).astype(np.int64), ["w", "e"])
    noise = downstream_tasks.Task("noise", "value", points, np.random.default_rng(0).normal(size=600))
    encoders = downstream.build_encoders(["raw", "xyz"])
    scores = downstream.evaluate(encoders, [east, noise], ("random", "spatial_block"), downstream.PROBES, folds=3)
    summary = downstream.summarise(scores)
    assert len(scores) == 2 * 2 * 2 * 3 * 3
    accuracy = summary[(summary.task == "east") & (summary.metric == "accuracy")]
    assert (accuracy.query("probe == 'knn'")["mean"] > 90).all()
    assert accuracy.query("encoder == 'raw' and probe == 'linear'")["mean"].min() > 95
    r2 = summary[(summary.task == "noise") & (summary.metric == "r2")]
    assert (r2["mean"] < 0.05).all()
    markdown = downstream.to_markdown(summary, "linear")
    assert "| raw |" in markdown and "east acc. (spatial_block)" in markdown and "noise R² (random)" in markdown


def test_the_untrained_encoders_give_their_position_encoding():
    points = sphere_points(20)
    encoders = downstream.build_encoders(["gridcell", "spherical_harmonics", "rbf", "theorydiag"], seed=1)
    shapes = {label: downstream.embed(encoder, points).shape for label, encoder in encoders.items()}
    assert shapes == {"gridcell (untrained)": (20, 4 * 32), "spherical_harmonics (untrained)": (20, 100),
                      "rbf (untrained)": (20, 200), "theorydiag (untrained)": (20, 256)}
    again = downstream.build_encoders(["rbf"], seed=1)["rbf (untrained)"]
    np.testing.assert_array_equal(downstream.embed(again, points), downstream.embed(encoders["rbf (untrained)"],
                                                                                     points))


def user_table(path, rows=60, target=None):
    points = sphere_points(rows, seed=3)
    table = pd.DataFrame({"lon": points[:, 0], "lat": points[:, 1],
                          "target": target if target is not None else np.where(points[:, 1] > 0, "north", "south")})
    table.to_csv(path, index=False)
    return path


def test_the_command_writes_markdown_and_csv_for_a_user_table(tmp_path, capsys):
    table = user_table(tmp_path / "mine.csv")
    summary = downstream.main(["--encoders", "raw", "xyz", "--tasks", "--table", str(table), "--folds", "3",
                               "--probes", "linear", "knn", "--split_methods", "random", "buffered",
                               "--buffer_km", "200", "--block_deg", "30", "--out_dir", str(tmp_path / "out")])
    written = pd.read_csv(tmp_path / "out" / "downstream.csv")
    assert set(written.columns) == {"encoder", "task", "kind", "split", "probe", "metric", "mean", "std", "folds"}
    assert len(written) == len(summary) == 2 * 2 * 2 * 2
    assert set(written.task) == {"table:mine.csv"} and (written.folds == 3).all()
    markdown = (tmp_path / "out" / "downstream.md").read_text()
    assert "table:mine.csv acc. (buffered)" in markdown and "--buffer_km 200" in markdown
    assert "Probe: knn" in capsys.readouterr().out


def test_no_task_and_no_encoder_are_named():
    with pytest.raises(ValueError, match="no task: give --tasks or --table"):
        downstream.main(["--tasks"])
    with pytest.raises(ValueError, match="no encoder: give --encoders"):
        downstream.main(["--encoders"])


def run_cli(*args):
    return subprocess.run([sys.executable, str(ROOT / "main" / "downstream.py"), *args], capture_output=True,
                          text=True, cwd=ROOT)


@pytest.mark.parametrize("args, message", [
    (["--encoders", "sphere2vec"], "--encoders: unknown encoder 'sphere2vec'"),
    (["--tasks", "biomes"], "--tasks: unknown 'biomes'"),
    (["--probes", "svm"], "--probes: unknown 'svm'"),
    (["--split_methods", "buffered", "--buffer_km", "0"], "needs --buffer_km > 0"),
    (["--folds", "1"], "--folds must be at least 2"),
    (["--checkpoint", "mine=/nowhere/run.pth.tar"], "no file at /nowhere/run.pth.tar"),
    (["--demo_dir", "/nowhere"], "--demo_dir /nowhere: no finished demo runs"),
])
def test_bad_options_are_named_before_anything_is_written(args, message, tmp_path):
    table = user_table(tmp_path / "t.csv")
    with pytest.raises((ValueError, OSError), match=message):
        downstream.main(["--encoders", "raw", "--tasks", "--table", str(table), "--out_dir", str(tmp_path / "o"),
                         *args])
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("change, message", [
    (lambda t: t.drop(columns="target"), "missing column(s) 'target'"),
    (lambda t: t.assign(lat=t.lat.astype(object).where(t.index != 4, "north")), "column 'lat', rows 4: not a number"),
    (lambda t: t.assign(lat=t.lat.where(t.index != 7, 120.0)), "column 'lat', rows 7: outside [-90, 90]"),
    (lambda t: t.assign(target=t.target.where(t.index != 2, None)), "column 'target', rows 2: empty"),
    (lambda t: t.head(5), "5 rows; a downstream task needs at least 10"),
    (lambda t: t.assign(target="same"), "column 'target': only 1 class(es)"),
])
def test_bad_user_tables_name_the_file_column_and_rows(tmp_path, change, message):
    path = user_table(tmp_path / "t.csv")
    change(pd.read_csv(path)).to_csv(path, index=False)
    with pytest.raises(ValueError) as caught:
        downstream_tasks.read_user_task(path)
    assert str(caught.value).startswith(str(path)) and message in str(caught.value)


def test_bad_input_on_the_command_line_is_one_line_and_exit_2(tmp_path):
    table = user_table(tmp_path / "t.csv", target=np.full(60, "same"))
    done = run_cli("--encoders", "raw", "--tasks", "--table", str(table))
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        f"downstream.py: error: {table}: column 'target': only 1 class(es) have at least 10 points; give more points "
        f"(--n_points, or rows) or a lower --min_class_count"]
    done = run_cli("--checkpoint", "mine")
    assert done.returncode == 2 and "give NAME=PATH" in done.stderr and "Traceback" not in done.stderr


def run_table(tmp_path, table, *args):
    """`downstream.main` on `table` with the raw encoder and the linear probe, into tmp_path / 'out'."""
    return downstream.main(["--encoders", "raw", "--probes", "linear", "--tasks", "--table", str(table),
                            "--out_dir", str(tmp_path / "out"), *args])


def test_an_earlier_run_s_outputs_are_kept_unless_overwrite(tmp_path):
    table = user_table(tmp_path / "t.csv")
    run_table(tmp_path, table, "--split_methods", "random")
    before = (tmp_path / "out" / "downstream.csv").read_bytes()
    with pytest.raises(ValueError, match=r"holds downstream.md and downstream.csv of an earlier run, which this run "
                                         r"would replace; give another --out_dir or add --overwrite"):
        run_table(tmp_path, table, "--split_methods", "spatial_block")
    assert (tmp_path / "out" / "downstream.csv").read_bytes() == before
    run_table(tmp_path, table, "--split_methods", "spatial_block", "--overwrite")
    assert "spatial_block" in (tmp_path / "out" / "downstream.csv").read_text()


def small_checkpoint(path, *flags):
    params = arguments.default_params(["--spa_enc_type", "gridcell", "--frequency_num", "4", "--num_filts", "16",
                                       "--num_rbf_anchor_pts", "5", "--max_radius", "360", *flags])
    anchors = sphere_points(5) if params["spa_enc_type"] == "rbf" else None
    model = models.build_model(params, 3, 1, anchors=anchors)
    checkpoints.save_checkpoint(path, model, None, 1, params)
    return path


@pytest.mark.parametrize("flags, message", [
    (["--spa_enc_type", "geo_net", "--use_date_feats", "T"], "was trained with dates (--use_date_feats T)"),
    (["--spa_enc_type", "rbf"], "an rbf encoder needs its anchor points"),
])
def test_checkpoints_that_need_more_than_lon_lat_are_named(tmp_path, flags, message):
    path = small_checkpoint(tmp_path / "m.pth.tar", *flags)
    with pytest.raises(ValueError, match=re.escape(message)) as caught:
        run_table(tmp_path, user_table(tmp_path / "t.csv"), "--checkpoint", f"mine={path}")
    assert str(path) in str(caught.value) and not (tmp_path / "out").exists()


@pytest.mark.parametrize("args", [["--checkpoint", "a={0}", "--checkpoint", "a={0}"], ["--checkpoint", "raw={0}"]])
def test_two_encoders_of_one_name_are_refused(tmp_path, args):
    path = small_checkpoint(tmp_path / "m.pth.tar")
    with pytest.raises(ValueError, match="is already an encoder's; give each --checkpoint its own NAME"):
        run_table(tmp_path, user_table(tmp_path / "t.csv"), *[arg.format(path) for arg in args])


@pytest.mark.parametrize("args, message", [
    (["--seed", "-1"], "--seed must be between 0 and 4294967295"),
    (["--seed", str(2 ** 32)], "--seed must be between 0 and 4294967295"),
    (["--min_class_count", "0"], "--min_class_count must be at least 1 (1 keeps every class), got 0"),
    (["--block_deg", "1e-12"], "--block_deg must be between 1e-06 and 180 degrees"),
    (["--split_methods", "buffered", "--buffer_km", "5000", "--probes", "linear"],
     "of the buffered split: the training points hold one class only"),
    (["--probes", "knn", "--folds", "5"], "--probes knn takes the 10 nearest training points, but there are 9"),
    (["--probes", "mlp", "--folds", "5"], "fold 0 of the random split, probe mlp: scikit-learn cannot fit it"),
])
def test_settings_a_task_cannot_use_are_named(tmp_path, args, message):
    rows = 12 if "--folds" in args else 60
    with pytest.raises(ValueError, match=re.escape(message)):
        downstream.main(["--encoders", "raw", "--tasks", "--table", str(user_table(tmp_path / "t.csv", rows)),
                         "--min_class_count", "1", "--out_dir", str(tmp_path / "out"), *args])
    assert not (tmp_path / "out").exists()


def test_a_constant_value_target_is_refused(tmp_path):
    path = user_table(tmp_path / "t.csv", target=np.full(60, 5.0))
    with pytest.raises(ValueError, match="column 'target': every row holds 5; a value task needs targets that vary"):
        downstream_tasks.read_user_task(path)


def test_the_untrained_rbf_encoding_gives_finite_scores(tmp_path):
    """Its kernels of 1 degree are ~0 at most points (values down to 1e-45): the scores are still finite."""
    summary = downstream.main(["--encoders", "rbf", "--probes", "linear", "--tasks", "--table",
                               str(user_table(tmp_path / "t.csv")), "--out_dir", str(tmp_path / "out")])
    assert np.isfinite(summary["mean"]).all()


def test_an_unwritable_out_dir_is_one_line_naming_the_flag_before_the_work(tmp_path, monkeypatch, capsys):
    table = user_table(tmp_path / "t.csv")
    monkeypatch.setattr(downstream.os, "access", lambda path, mode: False)
    monkeypatch.setattr(sys, "argv", ["downstream.py", "--encoders", "raw", "--tasks", "--table", str(table),
                                      "--out_dir", str(tmp_path / "o" / "p")])
    monkeypatch.delenv("CSP_TRACEBACK", raising=False)
    with pytest.raises(SystemExit) as stop:
        arguments.run_command(downstream.main, output_flag="--out_dir")
    assert stop.value.code == 2 and capsys.readouterr().err == (
        f"downstream.py: error: cannot access {tmp_path}: Permission denied; check the permissions of that path, "
        f"or write elsewhere (--out_dir)\n")
