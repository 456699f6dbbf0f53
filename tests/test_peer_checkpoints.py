"""TorchSpatial's checkpoints (made here, small, in its format) load with `load_location_encoder` and give the
embeddings of the encodings that TorchSpatial computed."""
import argparse

import numpy as np
import pytest
import torch

from csp import position_encodings as pe
from csp import sphere_encodings as se
from csp.arguments import default_params, parse_flags
from csp.models import build_model, load_location_encoder

POINTS = np.array([[0.0, 0.0], [-100.0, 40.0], [170.0, -30.0], [-75.3, 38.9], [12.5, 55.1]])


def _torchspatial_file(tmp_path, name, our_name, state_from=None, **changes):
    """A checkpoint as TorchSpatial writes it: its names, `rbf_kernel_size`, numpy scalars, `position_encoder.`
    keys. The weights are those of our model of `our_name` built with `state_from` flags (default: the params)."""
    params = parse_flags(["--spa_enc_type", our_name, "--num_filts", "8", "--hidden_dim", "16",
                          "--num_rbf_anchor_pts", "3", "--frequency_num", "4"])
    params.update(changes)
    torch.manual_seed(0)
    model = build_model({**params, **(state_from or {})}, num_classes=3, num_users=1,
                        anchors=POINTS[:3])
    state = {key.replace("spa_enc.dirvec", "spa_enc.position_encoder.dirvec")
             .replace("spa_enc.shift", "spa_enc.position_encoder.shift")
             .replace("spa_enc.embedding", "spa_enc.position_encoder.embedding"): value
             for key, value in model.state_dict().items()}
    params["rbf_kernel_size"] = np.float64(params.pop("rbf_kernal_size"))
    params["spa_enc_type"] = name
    params["rbf_anchor_pt_ids"] = list(np.arange(3, dtype=np.int64)) if our_name == "rbf" else None
    params["num_rbf_anchor_pts"] = np.int64(params["num_rbf_anchor_pts"])
    path = tmp_path / f"model_fmow_{name}.pth.tar"
    torch.save({"epoch": 5, "state_dict": state, "optimizer": None, "params": params}, path)
    return path


@pytest.mark.parametrize("name, ours", [("Space2Vec-grid", "gridcell"), ("Space2Vec-theory", "theory"),
                                        ("Sphere2Vec-sphereC", "sphere"), ("Sphere2Vec-sphereC+", "spheregrid"),
                                        ("Sphere2Vec-sphereM", "spheremixscale"), ("xyz", "xyz"),
                                        ("wrap_ffn", "wrap_ffn")])
def test_paper_names_load_as_our_encoders_with_the_same_embeddings(tmp_path, name, ours):
    path = _torchspatial_file(tmp_path, name, ours)
    loaded = load_location_encoder(path)
    assert loaded.params["spa_enc_type"] == ours
    torch.manual_seed(0)
    reference = build_model(default_params(["--spa_enc_type", ours, "--num_filts", "8", "--hidden_dim", "16",
                                            "--frequency_num", "4"]), 3, 1).eval()
    with torch.no_grad():
        expected = reference(torch.tensor(POINTS, dtype=torch.float32), return_feats=True)
    torch.testing.assert_close(loaded.embed(POINTS), expected)


def test_nerf_is_rebuilt_with_torchspatials_16_frequencies(tmp_path):
    path = _torchspatial_file(tmp_path, "NeRF", "nerf", state_from={"frequency_num": 16}, frequency_num=64)
    spa_enc = load_location_encoder(path).model.spa_enc
    np.testing.assert_allclose(spa_enc.freqs.numpy(), np.pi * 2.0 ** np.arange(16))
    assert spa_enc.ffn.input_dim == 96


@pytest.mark.parametrize("name, ours, encoding", [("Sphere2Vec-sphereM+", "spheregridmixscale", se.sphere_m_plus),
                                                  ("Sphere2Vec-dfs", "dft", se.dfs)])
def test_sphere_m_plus_and_dfs_get_torchspatials_schedule(tmp_path, name, ours, encoding):
    path = _torchspatial_file(tmp_path, name, ours, max_radius=1.0, min_radius=0.001)
    loaded = load_location_encoder(path)
    spa_enc = loaded.model.spa_enc
    assert torch.equal(spa_enc.freqs, torch.ones(4, dtype=torch.float64))    # 1 / 1^(s/3)
    coords = torch.tensor(POINTS, dtype=torch.float32)
    with torch.no_grad():
        expected = spa_enc.ffn(encoding(coords, torch.ones(4, dtype=torch.float64)))
    torch.testing.assert_close(loaded.embed(POINTS), expected)


def test_tile_ffn_is_rebuilt_with_its_single_cell(tmp_path):
    path = _torchspatial_file(tmp_path, "tile_ffn", "tile_ffn", state_from={"min_radius": 1e7}, min_radius=2.57e-6,
                              map_range=[-162, -59, 20, 56])
    loaded = load_location_encoder(path)
    assert loaded.model.spa_enc.embedding.num_embeddings == 1
    embeddings = loaded.embed(POINTS)
    assert torch.equal(embeddings, embeddings[:1].expand_as(embeddings))


def test_rff_reads_its_position_encoder_weights_and_stored_extent(tmp_path):
    path = _torchspatial_file(tmp_path, "rff", "rff", map_range=[-162, -59, 20, 56])
    saved = torch.load(path, weights_only=False)["state_dict"]
    spa_enc = load_location_encoder(path).model.spa_enc
    assert torch.equal(spa_enc.dirvec, saved["spa_enc.position_encoder.dirvec"])
    coords = torch.tensor(POINTS, dtype=torch.float32)
    expected = pe.random_fourier(coords, (-162, -59, 20, 56), saved["spa_enc.position_encoder.dirvec"],
                                 saved["spa_enc.position_encoder.shift"])
    torch.testing.assert_close(spa_enc.encode(coords), expected)


def test_rbf_with_numpy_ids_and_kernel_size_spelling(tmp_path):
    """TorchSpatial's rbf files hold numpy int64 anchor ids and `rbf_kernel_size` (no `rbf_kernal_size`)."""
    path = _torchspatial_file(tmp_path, "rbf", "rbf", rbf_kernal_size=7.0)
    loaded = load_location_encoder(path, anchors=POINTS[:3])
    assert loaded.params["rbf_kernal_size"] == 7.0 and loaded.params["rbf_anchor_pt_ids"] == [0, 1, 2]
    assert loaded.model.spa_enc.kernel_size == 7.0


def test_other_pickled_objects_are_refused(tmp_path):
    """Only the allow-listed numpy scalar types are unpickled; anything else is an error, never executed."""
    path = _torchspatial_file(tmp_path, "xyz", "xyz")
    ckpt = torch.load(path, weights_only=False)
    ckpt["params"]["args"] = argparse.Namespace(lr=1.0)
    torch.save(ckpt, path)
    with pytest.raises(ValueError, match="not a readable CSP checkpoint"):
        load_location_encoder(path)
