"""export.py: ONNX parity for every encoder, safetensors round trip, GeoTIFF read back by GDAL (rasterio), Parquet."""
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from csp import arguments
from csp import encoders
from csp import export
from csp import models
from csp import predict
from csp import safetensors_file
from csp.arguments import parse_flags

SMALL = "--frequency_num 4 --hidden_dim 32 --num_filts 16 --min_radius 1 --num_rbf_anchor_pts 20".split()
CLASS_NAMES = ["oak", "pine", "birch", "moss", "fern"]
REGISTRY = list(encoders.SPATIAL_ENCODERS) + ["geo_net", "geo_net with dates", "spherical_harmonics with siren"]


def small_encoder(name, *flags, seed=0):
    """A PretrainedLocationEncoder of `name` (untrained, seeded), small flags, five named classes."""
    extra = {"geo_net with dates": ["--use_date_feats", "T"],
             "spherical_harmonics with siren": ["--spa_enc_net", "siren"]}.get(name, [])
    if name == "tile_ffn":
        extra = ["--min_radius", "10"]
    params = parse_flags(["--spa_enc_type", name.split()[0], "--unsuper_loss", "none", *SMALL, *extra, *flags])
    anchors = np.random.default_rng(seed).uniform(-90, 90, (20, 2)).astype(np.float32)
    torch.manual_seed(seed)
    rbf = params["spa_enc_type"] == "rbf"
    model = models.build_model(params, len(CLASS_NAMES), 1, anchors=anchors if rbf else None)
    with torch.no_grad():   # trained-looking class weights, so that the prior is not ~0.5 everywhere
        model.class_emb.weight.normal_(0, 1)
    return models.PretrainedLocationEncoder(model, params, torch.device("cpu"), class_names=CLASS_NAMES)


@pytest.mark.parametrize("name", REGISTRY)
def test_onnx_computes_what_pytorch_computes_for_every_encoder(name, tmp_path):
    encoder = small_encoder(name)
    export.export_onnx(encoder, tmp_path / "m.onnx")
    report = export.check_onnx(tmp_path / "m.onnx", encoder)
    assert max(diff for diff, _ in report.values()) <= export.PARITY_TOLERANCE, report
    assert export.parity_ok(report)


def test_onnx_batch_is_dynamic_and_the_metadata_names_the_classes(tmp_path):
    import onnx
    import onnxruntime
    encoder = small_encoder("sphere")
    export.export_onnx(encoder, tmp_path / "m.onnx")
    session = onnxruntime.InferenceSession(str(tmp_path / "m.onnx"))
    for count in (1, 7, 1000):
        embedding, prior = session.run(None, {"lonlat": np.zeros((count, 2), np.float32)})
        assert embedding.shape == (count, 16) and prior.shape == (count, 5)
    props = {p.key: p.value for p in onnx.load(str(tmp_path / "m.onnx")).metadata_props}
    assert props["class_names"] == '["oak", "pine", "birch", "moss", "fern"]'


def test_parity_points_hold_the_poles_and_the_antimeridian():
    points = export.parity_points()
    assert len(points) == export.PARITY_POINTS
    assert (points[:, 1] == 90).sum() >= 1000 and (points[:, 1] == -90).sum() >= 1000
    assert (points[:, 0] == 180).sum() >= 1000 and (points[:, 0] == -180).sum() >= 1000


def test_an_encoder_onnx_cannot_express_gets_a_clear_message(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise RuntimeError("Exporting the operator 'aten::mystery' to ONNX opset version 17 is not supported.\nmore")
    monkeypatch.setattr(torch.onnx, "export", refuse)
    with pytest.raises(ValueError, match=r"--spa_enc_type xyz \(--spa_enc_net ffn\) cannot be expressed in ONNX: "
                                         r"RuntimeError: Exporting the operator 'aten::mystery'.*--to safetensors"):
        export.export_onnx(small_encoder("xyz"), tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize("name", ["rbf", "geo_net with dates", "spheregridmixscale"])
def test_safetensors_round_trip_gives_the_same_embeddings(name, tmp_path, monkeypatch):
    encoder = small_encoder(name)
    wrapped = models.build_model({**encoder.params, "unsuper_loss": "contsoftmax"}, 5, 1, 8,
                                 anchors=getattr(encoder.model.spa_enc, "anchors", None)
                                 if name == "rbf" else None)
    wrapped.loc_enc.load_state_dict(encoder.model.state_dict())
    safetensors_file.save(tmp_path / "m.safetensors", wrapped, {**encoder.params, "unsuper_loss": "contsoftmax"},
                          CLASS_NAMES)
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("a .safetensors file must not be unpickled"))
    loaded = models.load_location_encoder(tmp_path / "m.safetensors")
    points = export.parity_points(5000)
    dates = np.linspace(0, 1, len(points)) if "dates" in name else None
    assert torch.equal(loaded.embed(points, dates), encoder.embed(points, dates))
    assert torch.equal(loaded.class_probabilities(points, dates), encoder.class_probabilities(points, dates))
    assert loaded.class_names == CLASS_NAMES


def test_a_safetensors_file_of_something_else_is_refused(tmp_path):
    from safetensors.torch import save_file
    save_file({"w": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="without the metadata of a CSP location encoder"):
        models.load_location_encoder(tmp_path / "other.safetensors")
    (tmp_path / "broken.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(ValueError, match="not a readable .safetensors file"):
        models.load_location_encoder(tmp_path / "broken.safetensors")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A fine-tuned-looking checkpoint file of a small sphere encoder, as a .safetensors file."""
    path = tmp_path_factory.mktemp("ck") / "m.safetensors"
    encoder = small_encoder("sphere")
    safetensors_file.save(path, encoder.model, {**encoder.params, "checkpoint_phase": "fine-tuning"}, CLASS_NAMES)
    return path, encoder


def run_export(*argv):
    return export.main([str(a) for a in argv])


def test_a_geotiff_opens_in_gdal_with_its_georeferencing(checkpoint, tmp_path):
    rasterio = pytest.importorskip("rasterio")
    path, encoder = checkpoint
    run_export("--checkpoint", path, "--to", "geotiff", "--values", "prior", "--class", "birch", "--bbox", -30, 10,
               20, 60, "--resolution", 0.1, "--out", tmp_path / "birch.tif")
    with rasterio.open(tmp_path / "birch.tif") as image:
        assert image.crs.to_epsg() == 4326
        assert image.width == 500 and image.height == 500 and image.count == 1
        assert image.bounds == pytest.approx((-30, 10, 20, 60))
        assert image.res == pytest.approx((0.1, 0.1))
        assert image.block_shapes == [(256, 256)] and image.descriptions == ("birch",)
        band = image.read(1)
        rows, cols = np.array([0, 17, 499, 250]), np.array([0, 400, 499, 3])
        lon, lat = image.xy(rows, cols)           # cell centres, from the file's georeferencing
    expected = encoder.class_probabilities(np.stack([lon, lat], 1))[:, 2].numpy()
    assert np.allclose(band[rows, cols], expected, atol=1e-6)
    assert band[0, 0] != band[-1, -1]


def test_a_pca_geotiff_is_rgb_and_an_embedding_geotiff_has_every_channel(checkpoint, tmp_path):
    rasterio = pytest.importorskip("rasterio")
    path, encoder = checkpoint
    run_export("--checkpoint", path, "--to", "geotiff", "--values", "pca", "--resolution", 2, "--out",
               tmp_path / "rgb.tif")
    with rasterio.open(tmp_path / "rgb.tif") as image:
        assert image.count == 3 and image.dtypes == ("uint8",) * 3 and image.shape == (90, 180)
        rgb = image.read()
    assert rgb.std(axis=(1, 2)).min() > 10             # the colours vary over the globe
    run_export("--checkpoint", path, "--to", "geotiff", "--values", "embedding", "--bbox", 0, 0, 10, 5,
               "--resolution", 1, "--out", tmp_path / "emb.tif")
    with rasterio.open(tmp_path / "emb.tif") as image:
        assert image.count == 16
        assert np.allclose(image.read()[:, 4, 2], encoder.embed([[2.5, 0.5]])[0].numpy(), atol=1e-6)


def test_parquet_at_points_and_at_cell_centres(checkpoint, tmp_path):
    path, encoder = checkpoint
    pd.DataFrame({"lon": [-180, 0, 179.5], "lat": [90, 0, -89], "name": ["a", "b", "c"]}).to_csv(
        tmp_path / "p.csv", index=False)
    run_export("--checkpoint", path, "--to", "parquet", "--points", tmp_path / "p.csv", "--out",
               tmp_path / "p.parquet")
    table = pd.read_parquet(tmp_path / "p.parquet")
    assert list(table.columns) == ["lon", "lat", "name", *CLASS_NAMES] and table["name"].tolist() == ["a", "b", "c"]
    expected = encoder.class_probabilities(table[["lon", "lat"]].to_numpy().copy())
    assert np.allclose(table[CLASS_NAMES].to_numpy(), expected.numpy())
    run_export("--checkpoint", path, "--to", "parquet", "--values", "embedding", "--bbox", 10, 20, 14, 22,
               "--resolution", 0.5, "--out", tmp_path / "grid.parquet")
    grid = pd.read_parquet(tmp_path / "grid.parquet")
    assert len(grid) == 8 * 4 and grid[["lon", "lat"]].iloc[0].tolist() == [10.25, 21.75]
    assert np.allclose(grid[[f"e{i}" for i in range(16)]].to_numpy(),
                       encoder.embed(grid[["lon", "lat"]].to_numpy().copy()).numpy(), atol=1e-6)


def test_the_onnx_command_reports_the_parity(checkpoint, tmp_path, capsys):
    path, _ = checkpoint
    run_export("--checkpoint", path, "--to", "onnx", "--out", tmp_path / "m.onnx")
    assert "onnxruntime vs PyTorch on 100,000 points (poles and lon ±180 included): max |difference| embedding" \
        in capsys.readouterr().out


@pytest.mark.parametrize("flags, words", [
    (["--to", "geotiff", "--values", "prior", "--out", "x.tif"], "give --class NAME once"),
    (["--to", "geotiff", "--class", "spruce", "--out", "x.tif"], "'spruce' is not a class"),
    (["--to", "geotiff", "--class", "oak", "--resolution", "0.7", "--out", "x.tif"], "whole cells"),
    (["--to", "geotiff", "--class", "oak", "--bbox", "10", "0", "5", "5", "--out", "x.tif"], "W < E"),
    (["--to", "onnx", "--out", "x.tif"], "ending in .onnx"),
    (["--to", "parquet", "--points", "missing.csv", "--out", "x.parquet"], "missing.csv"),
    (["--to", "geotiff", "--class", "oak", "--date", "0.5", "--out", "x.tif"], "--date is for models trained with"),
    (["--to", "parquet", "--class", "oak", "--class", "oak", "--out", "x.parquet"], "'oak' is given more than once"),
    (["--to", "geotiff", "--class", "oak", "--resolution", "0.001", "--out", "x.tif"],
     "360,000 x 180,000 cells x 1 channels = 241 GiB, more than the 64 GiB written at most; give a coarser"),
    (["--to", "geotiff", "--values", "pca", "--bbox", "0", "0", "1", "1", "--out", "x.tif"],
     "at least 4 distinct locations; these cells or --points have 1"),
])
def test_bad_export_flags_are_one_line_and_write_nothing(checkpoint, tmp_path, monkeypatch, capsys, flags, words):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["export.py", "--checkpoint", str(checkpoint[0]), *flags])
    with pytest.raises(SystemExit) as stopped:
        arguments.run_command(export.main)
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and len(err.strip().splitlines()) == 1 and words in err, err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name, text, flags, words", [
    ("p.csv", "lon,lat\n", ["--to", "parquet", "--points", "p.csv", "--out", "x.parquet"], "p.csv has no rows"),
    ("p.csv", "lon,lat\n1,2\n1,2\n3,4\n", ["--to", "parquet", "--values", "pca", "--points", "p.csv", "--out",
                                             "x.parquet"], "these cells or --points have 2"),
    ("p.csv", "lon,lat,oak\n1,2,x\n", ["--to", "parquet", "--points", "p.csv", "--out", "x.parquet"],
     "column(s) 'oak' would also name output channels"),
    ("a.npy", "lon,lat\n1,2\n", ["--to", "onnx", "--anchors", "a.npy", "--out", "x.onnx"],
     "--anchors a.npy is not a .npy array of numbers"),
])
def test_bad_export_inputs_are_one_line_and_write_nothing(checkpoint, tmp_path, monkeypatch, capsys, name, text,
                                                          flags, words):
    monkeypatch.chdir(tmp_path)
    (tmp_path / name).write_text(text)
    monkeypatch.setattr(sys, "argv", ["export.py", "--checkpoint", str(checkpoint[0]), *flags])
    with pytest.raises(SystemExit) as stopped:
        arguments.run_command(export.main)
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and len(err.strip().splitlines()) == 1 and words in err, err
    assert [p.name for p in tmp_path.iterdir()] == [name]


def test_grid_blocks_split_rows_wider_than_a_block():
    grid = export.Grid([-180, -1, 180, 1], 1.0)
    blocks = list(export.grid_blocks(grid, 100))
    assert [len(b) for b in blocks] == [100, 100, 100, 60] * 2
    assert np.array_equal(np.concatenate(blocks), grid.centres(0, 2, 0, 360))


def test_sigterm_mid_map_is_one_line_and_leaves_no_temporary_file(checkpoint, tmp_path):
    command = [sys.executable, export.__file__, "--checkpoint", str(checkpoint[0]), "--to", "geotiff", "--values",
               "embedding", "--resolution", "0.05", "--out", str(tmp_path / "map.tif")]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "CSP_PROGRESS_INTERVAL": "0"})
    try:
        first = process.stderr.readline()            # the first progress line: the map is being written
        process.send_signal(signal.SIGTERM)
        err = process.stderr.read()
        code = process.wait(60)
    finally:
        if process.poll() is None:
            process.kill()
    assert "Progress: GeoTIFF tiles" in first and code == 143
    lines = [line for line in err.splitlines() if "Progress" not in line]
    assert len(lines) == 1 and "stopped by SIGTERM" in lines[0] and "Traceback" not in err, err
    assert list(tmp_path.iterdir()) == []


def test_the_logged_progress_of_a_map_ends_at_its_last_tile(checkpoint, tmp_path, caplog):
    with caplog.at_level("INFO", logger="csp.progress"):
        run_export("--checkpoint", checkpoint[0], "--to", "geotiff", "--class", "oak", "--resolution", 1, "--out",
                   tmp_path / "m.tif")
    lines = [r.getMessage() for r in caplog.records if "GeoTIFF tiles" in r.getMessage()]
    assert lines[-1].startswith("Progress: GeoTIFF tiles: 2/2 "), lines


def test_predict_refuses_a_table_without_dates_for_a_model_trained_with_them(tmp_path):
    encoder = small_encoder("geo_net with dates")
    safetensors_file.save(tmp_path / "d.safetensors", encoder.model, encoder.params, CLASS_NAMES)
    pd.DataFrame({"image": ["a", "b"], "lon": [1.0, 2.0], "lat": [3.0, 4.0]}).to_csv(tmp_path / "t.csv", index=False)
    pd.DataFrame(np.full((2, 5), 0.2), columns=CLASS_NAMES).assign(image=["a", "b"]).to_csv(tmp_path / "p.csv",
                                                                                              index=False)
    with pytest.raises(ValueError, match="t.csv: no dates .* was trained with dates; add a 'date' column"):
        predict.predict(tmp_path / "d.safetensors", tmp_path / "t.csv", tmp_path / "p.csv")


def test_the_checkpoint_phase_survives_safetensors_and_onnx(tmp_path, capsys):
    onnx = pytest.importorskip("onnx")
    encoder = small_encoder("sphere")
    safetensors_file.save(tmp_path / "pre.safetensors", encoder.model, {**encoder.params,
                                                                        "checkpoint_phase": "pre-training"})
    run_export("--checkpoint", tmp_path / "pre.safetensors", "--to", "safetensors", "--out",
               tmp_path / "again.safetensors")
    run_export("--checkpoint", tmp_path / "again.safetensors", "--to", "onnx", "--out", tmp_path / "pre.onnx")
    assert models.load_location_encoder(tmp_path / "again.safetensors").params["checkpoint_phase"] == "pre-training"
    props = {p.key: p.value for p in onnx.load(tmp_path / "pre.onnx").metadata_props}
    assert json.loads(props["params"])["checkpoint_phase"] == "pre-training"
    assert "is a pre-training checkpoint" in capsys.readouterr().out
