import json
import math

import numpy as np
import pytest
import torch

from csp import models
from csp.arguments import default_params
from csp.checkpoints import load_checkpoint, save_checkpoint
from csp.models import FCNet, LocationEncoder, LocationImageEncoder, build_model, check_lonlat, load_location_encoder

GOLDEN_CONFIGS = ["gridcell_inat_csp", "gridcell_fmow_csp", "gridcell_l2regress", "gridcell_sup_only",
                  "gridcell_2hidden_nolayn", "gridcell_nerf", "gridcellnorm", "theory", "theorynorm", "theorydiag",
                  "hexagridcell", "naive", "rbf", "rff", "geo_net_fft", "geo_net_wrap"]


def _golden(golden_dir, name):
    data = np.load(golden_dir / "encoders" / f"{name}.npz")
    return {key: data[key] for key in data.files}


def _index(golden_dir):
    return json.loads((golden_dir / "encoders" / "index.json").read_text())


def test_golden_index_lists_every_configuration(golden_dir):
    assert sorted(_index(golden_dir)["configs"]) == sorted(GOLDEN_CONFIGS)


@pytest.mark.parametrize("name", GOLDEN_CONFIGS)
def test_original_checkpoint_rebuilt_from_its_params_reproduces_the_golden_outputs(golden_dir, name):
    golden = _golden(golden_dir, name)
    ckpt = torch.load(golden_dir / "encoders" / f"{name}.pth.tar", weights_only=True, map_location="cpu")
    params = ckpt["params"]
    model = build_model(params, params["num_classes"], params["num_users"], cnn_feat_dim=2048,
                        anchors=golden.get("anchors"))
    model.load_state_dict(ckpt["state_dict"], strict=True)
    model.eval()
    coords = torch.from_numpy(golden["coords"])
    prob_coords = prob3_coords = coords
    if name == "geo_net_fft":
        # The original geo_net_fft divided its caller's tensor by (180, 90) in place on every call; the golden
        # generator reused one tensor for emb, prob and prob_class3, so prob saw it divided once, prob_class3
        # twice. This model leaves its input alone, so feed it those same inputs.
        prob_coords = coords / torch.tensor([180.0, 90.0])
        prob3_coords = prob_coords / torch.tensor([180.0, 90.0])
    with torch.no_grad():
        emb = model(coords, return_feats=True)
        prob = model(prob_coords)
        prob3 = model(prob3_coords, class_of_interest=3)
    np.testing.assert_allclose(emb.numpy(), golden["emb"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(prob.numpy(), golden["prob"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(prob3.numpy(), golden["prob_class3"], rtol=0, atol=1e-5)
    assert torch.equal(coords, torch.from_numpy(golden["coords"]))


@pytest.mark.parametrize("name", GOLDEN_CONFIGS)
def test_our_models_have_exactly_the_original_state_dict_keys_and_shapes(golden_dir, name):
    config = _index(golden_dir)["configs"][name]
    params = default_params(config["argv"])
    anchors = torch.zeros(params["num_rbf_anchor_pts"], 2)
    model = build_model(params, num_classes=20, num_users=5, cnn_feat_dim=2048, anchors=anchors)
    assert isinstance(model, LocationImageEncoder) == config["wrapper_LocationImageEncoder"]
    assert [[key, list(value.shape)] for key, value in model.state_dict().items()] == config["state_dict_keys"]


def test_build_model_picks_the_model_class_and_is_deterministic_when_seeded():
    assert type(build_model(default_params([]), 3, 2)) is LocationEncoder
    assert type(build_model(default_params(["--spa_enc_type", "geo_net"]), 3, 2)) is FCNet
    csp = default_params(["--unsuper_loss", "contsoftmax"])
    torch.manual_seed(0)
    first = build_model(csp, 3, 2, cnn_feat_dim=16)
    torch.manual_seed(0)
    second = build_model(csp, 3, 2, cnn_feat_dim=16)
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))
    with pytest.raises(ValueError, match="cnn_feat_dim"):
        build_model(csp, 3, 2)


def test_csp_wrapper_shares_the_inner_modules_and_orders_parameters_as_the_original():
    model = build_model(default_params(["--unsuper_loss", "contsoftmax", "--frequency_num", "32"]), 20, 5, 2048)
    assert model.spa_enc is model.loc_enc.spa_enc and model.class_emb is model.loc_enc.class_emb
    shapes = [tuple(p.shape) for p in model.parameters()]
    assert shapes == [(512,), (512,), (512, 128), (512,), (256, 512), (256,), (20, 256), (5, 256), (256, 2048),
                      (256,)]
    l2 = build_model(default_params(["--unsuper_loss", "l2regress"]), 20, 5, 64)
    assert l2.loc_dec.weight.shape == (64, 256) and not hasattr(l2, "img_dec")
    geo = build_model(default_params(["--spa_enc_type", "geo_net", "--unsuper_loss", "imgcontloss"]), 20, 5, 64)
    assert geo.spa_enc is geo.loc_enc and geo.img_dec.weight.shape == (256, 64)


def test_class_of_interest_is_the_matching_column():
    model = build_model(default_params([]), 7, 2).eval()
    coords = torch.tensor([[10.0, 20.0], [-30.0, 40.0]])
    with torch.no_grad():
        torch.testing.assert_close(model(coords, class_of_interest=4), model(coords)[:, 4])


@pytest.mark.parametrize("loc_encode, date_encode, width", [
    ("encode_cos_sin", "encode_cos_sin", 6), ("encode_3D", "encode_none", 4), ("encode_none", "encode_cos_sin", 4)])
def test_geo_net_computes_its_input_features_from_degrees_and_date(loc_encode, date_encode, width):
    params = default_params(["--spa_enc_type", "geo_net", "--loc_encode", loc_encode, "--use_date_feats", "T",
                             "--date_encode", date_encode])
    model = build_model(params, 3, 1).eval()
    assert model.feats[0].in_features == width
    coords = torch.tensor([[90.0, 22.5, 0.75]])
    feats = model.input_features(coords)[0]
    x, y = math.pi / 2, math.pi / 4
    loc = {"encode_cos_sin": [math.sin(x), math.sin(y), math.cos(x), math.cos(y)],
           "encode_3D": [math.cos(x) * math.cos(y), math.sin(x) * math.cos(y), math.sin(y)],
           "encode_none": [0.5, 0.25]}[loc_encode]
    date = [math.sin(math.pi / 2), math.cos(math.pi / 2)] if date_encode == "encode_cos_sin" else [0.5]
    np.testing.assert_allclose(feats.numpy(), loc + date, atol=1e-6)
    with pytest.raises(ValueError, match=r"expects a \(B, 3\) tensor, got shape \(1, 2\)"):
        model(coords[:, :2])


def test_check_lonlat_accepts_arrays_and_lists_and_returns_float32():
    out = check_lonlat(np.array([[180.0, -90.0], [0.5, 1.5]]))
    assert out.dtype == torch.float32 and out.shape == (2, 2)
    assert check_lonlat([[1, 2]]).tolist() == [[1.0, 2.0]]


def test_check_lonlat_names_the_offending_rows():
    coords = np.zeros((10, 2))
    coords[[1, 3, 4, 6, 7, 9]] = [[181, 0], [0, -90.5], [np.nan, 0], [np.inf, 0], [-200, 0], [0, 91]]
    with pytest.raises(ValueError) as err:
        check_lonlat(coords)
    message = str(err.value)
    assert "6 of 10 rows: 1 (181.0, 0.0), 3 (0.0, -90.5), 4 (nan, 0.0), 6 (inf, 0.0), 7 (-200.0, 0.0)" in message
    assert "(first 5 shown)" in message
    for bad in (np.zeros((3, 3)), np.zeros(2), [["a", "b"]]):
        with pytest.raises(ValueError, match=r"expected an \(N, 2\) array of \(lon, lat\)"):
            check_lonlat(bad)


def _save(tmp_path, params, anchors=None, name="model.pth.tar"):
    torch.manual_seed(1)
    model = build_model(params, 6, 3, cnn_feat_dim=32, anchors=anchors)
    optimizer = torch.optim.Adam(model.parameters())
    path = tmp_path / name
    save_checkpoint(str(path), model, optimizer, 4, params)
    return model.eval(), path


@pytest.mark.parametrize("flags", [["--unsuper_loss", "contsoftmax"], ["--spa_enc_type", "rbf"],
                                   ["--spa_enc_type", "geo_net", "--use_date_feats", "T"]])
def test_saved_checkpoint_loads_back_with_the_same_outputs(tmp_path, flags):
    params = default_params(flags + ["--num_rbf_anchor_pts", "4", "--device", "cpu"])
    anchors = np.array([[0.0, 0.0], [10.0, 10.0], [-50.0, 20.0], [100.0, -40.0]], dtype=np.float32)
    model, path = _save(tmp_path, params, anchors)
    lonlat = np.array([[0.0, 0.0], [-120.5, 33.3], [179.0, -89.0]], dtype=np.float32)
    dates = np.array([0.1, 0.5, 0.9])
    loaded = load_location_encoder(str(path), "cpu", anchors=anchors)
    coords = torch.from_numpy(lonlat)
    if params["use_date_feats"]:
        coords = torch.cat((coords, torch.tensor(dates, dtype=torch.float32)[:, None]), 1)
    with torch.no_grad():
        torch.testing.assert_close(loaded.embed(lonlat, dates), model(coords, return_feats=True))
        torch.testing.assert_close(loaded.class_probabilities(torch.from_numpy(lonlat), dates), model(coords))
    assert loaded.class_probabilities(np.zeros((0, 2)), np.zeros(0)).shape == (0, 6)


def test_a_batch_size_below_one_is_named(tmp_path):
    """batch_size=0 was "range() arg 3 must not be zero" at the first embedding."""
    _, path = _save(tmp_path, default_params([]))
    with pytest.raises(ValueError, match="batch_size must be an integer of at least 1, got 0"):
        load_location_encoder(str(path), batch_size=0)


def test_embedding_is_batched(tmp_path):
    model, path = _save(tmp_path, default_params([]))
    loaded = load_location_encoder(str(path))
    loaded.batch_size = 2
    lonlat = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0], [9.0, 10.0]])
    with torch.no_grad():
        torch.testing.assert_close(loaded.embed(lonlat), model(lonlat, return_feats=True))


def test_stored_cuda_device_is_ignored_and_missing_sizes_come_from_the_weights(tmp_path):
    params = default_params(["--unsuper_loss", "imgcontloss", "--device", "cpu"])
    model, path = _save(tmp_path, params)
    ckpt = load_checkpoint(str(path))
    ckpt["params"]["device"] = "cuda:1"
    torch.save(ckpt, path)
    loaded = load_location_encoder(str(path), "cpu")
    assert loaded.params["device"] == "cpu" and next(loaded.model.parameters()).device.type == "cpu"
    assert (loaded.model.class_emb.weight.shape, loaded.model.user_emb.weight.shape) == ((6, 256), (3, 256))
    assert loaded.model.img_dec.weight.shape == (256, 32)


def test_class_names_come_from_the_checkpoint_where_it_has_them(tmp_path, golden_dir):
    model, path = _save(tmp_path, default_params([]))
    assert load_location_encoder(str(path)).class_names is None
    save_checkpoint(path, model, None, 1, default_params([]), class_names=[f"bird {c}" for c in range(6)])
    assert set(torch.load(path, weights_only=True)) == {"epoch", "state_dict", "optimizer", "params", "class_names"}
    assert load_location_encoder(str(path)).class_names == [f"bird {c}" for c in range(6)]
    assert load_location_encoder(str(golden_dir / "encoders" / "naive.pth.tar")).class_names is None


@pytest.mark.parametrize("change, message", [
    (lambda ckpt: ckpt["state_dict"].update({k: v * float("nan") for k, v in ckpt["state_dict"].items()}),
     "its weights hold NaN or infinite values"),
    (lambda ckpt: ckpt["params"].update(frequency_num=10 ** 9), "--frequency_num 1000000000"),
    (lambda ckpt: ckpt["params"].update(num_classes="6"), "is malformed: its params' num_classes is '6', not an"),
    (lambda ckpt: ckpt["params"].update(spa_enc_type="spherical_harmonics", legendre_poly_num=0),
     "--legendre_poly_num must be >= 1"),
    (lambda ckpt: ckpt["params"].update(spa_enc_type=["gridcell"]), "spa_enc_type is ['gridcell'], not the name"),
    (lambda ckpt: ckpt["params"].update(num_classes=1e9), "num_classes is 1000000000.0, not an integer >= 1"),
    (lambda ckpt: ckpt["params"].update(num_classes=-3), "num_classes is -3, not an integer >= 1"),
    (lambda ckpt: ckpt["params"].update(num_classes=10 ** 9), "num_classes is 1000000000, but its weights hold 6"),
    (lambda ckpt: ckpt["params"].update(num_users=0), "num_users is 0"),
    (lambda ckpt: ckpt["params"].update(map_range=[]), "map_range is [], not the extent"),
    (lambda ckpt: ckpt["params"].update(map_range=[0, 0, -90, 90]), "map_range is [0, 0, -90, 90]"),
    (lambda ckpt: ckpt["params"].update(map_range=[-180, 180, -90, float("nan")]), "map_range is"),
    (lambda ckpt: ckpt.update(class_names=["a", "b"]), "its class_names names 2 classes, but its class head has 6"),
    (lambda ckpt: ckpt.update(class_names=[1, 2, 3, 4, 5, 6]), "its class_names is not a list of class names"),
    (lambda ckpt: ckpt.update(world_size=0), "its world_size is 0"),
    (lambda ckpt: ckpt.update(data={"--data_table": {"path": 3}}), "its data is not a record of the files"),
    (lambda ckpt: ckpt["params"].update(rbf_anchor_pt_ids=[1, -2]), "rbf_anchor_pt_ids is not a list"),
    (lambda ckpt: ckpt.update(epoch=-1), "its epoch is -1, not an integer >= 0"),
])
def test_checkpoints_no_model_can_be_used_from_are_errors_naming_the_file(tmp_path, change, message):
    """NaN weights gave NaN embeddings; huge sizes and params of the wrong type gave raw torch errors."""
    _, path = _save(tmp_path, default_params([]))
    ckpt = load_checkpoint(str(path))
    change(ckpt)
    torch.save(ckpt, path)
    with pytest.raises(ValueError, match="model.pth.tar") as err:
        load_location_encoder(str(path))
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("anchors, message", [
    ([[0.0, float("nan")], [1.0, 1.0]], "1 of 2 rows: 0 (0.0, nan)"),
    ([[0.0, 0.0], [200.0, 1.0]], "1 of 2 rows: 1 (200.0, 1.0)"),
    ([["a", "b"], ["c", "d"]], "as real numbers (float or int), got <U1 values"),
])
def test_rbf_anchors_that_are_not_locations_are_a_clear_error(tmp_path, anchors, message):
    """NaN anchors gave NaN embeddings for every location."""
    params = default_params(["--spa_enc_type", "rbf", "--num_rbf_anchor_pts", "2", "--device", "cpu"])
    _, path = _save(tmp_path, params, anchors=torch.zeros(2, 2))
    with pytest.raises(ValueError, match=r"model\.pth\.tar: anchors=: ") as err:
        load_location_encoder(str(path), anchors=anchors)
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("lonlat, message", [
    (np.array([[10.0 + 1j, 20.0]]), "got complex128 values"),
    (torch.tensor([[10.0 + 1j, 20.0]]), "got torch.complex64 values"),
    (np.array([[10.0, 20.0]], dtype=object), "got object values"),
    ([["10", "20"]], "got <U2 values"),
    (np.array([[True, False]]), "got bool values"),
    ([[10.0, 20.0], [30.0]], "expected an (N, 2) array of (lon, lat)"),
])
def test_coordinates_that_are_not_real_numbers_are_refused_by_embed_and_class_probabilities(tmp_path, lonlat,
                                                                                          message):
    """Complex coordinates were cast to their real part with a warning, object and string arrays gave torch's
    TypeError."""
    _, path = _save(tmp_path, default_params([]))
    loaded = load_location_encoder(str(path))
    for method in (loaded.embed, loaded.class_probabilities):
        with pytest.raises(ValueError) as err:
            method(lonlat)
        assert message in str(err.value) and "\n" not in str(err.value)


def test_class_probabilities_of_a_pre_training_checkpoint_are_refused_its_embeddings_are_not(tmp_path):
    """The class head of a pre-training checkpoint was never trained: class_probabilities returned noise silently
    (plots.py refused the same file); the original's pre-training files are known by their UNSUPER- names."""
    params = {**default_params(["--unsuper_loss", "contsoftmax"]), "checkpoint_phase": "pre-training"}
    _, path = _save(tmp_path, params)
    params.pop("checkpoint_phase")
    _, original = _save(tmp_path, params, name="model_fmow_gridcell_UNSUPER-contsoftmax_0.0010.pth.tar")
    for source in (path, original):
        loaded = load_location_encoder(str(source))
        assert loaded.embed([[10.0, 20.0]]).shape == (1, 256)
        with pytest.raises(ValueError, match="is a pre-training checkpoint: its class head was never trained"):
            loaded.class_probabilities([[10.0, 20.0]])


def test_rbf_checkpoint_without_anchors_is_a_clear_error(golden_dir):
    with pytest.raises(ValueError, match=r"rbf\.pth\.tar: an rbf model needs anchors=.*rbf_anchor_pt_ids"):
        load_location_encoder(str(golden_dir / "encoders" / "rbf.pth.tar"))


def test_checkpoint_that_does_not_fit_its_flags_lists_the_keys(tmp_path):
    params = default_params(["--device", "cpu"])
    _, path = _save(tmp_path, params)
    ckpt = load_checkpoint(str(path))
    ckpt["params"].update(frequency_num=16, use_layn=False)
    torch.save(ckpt, path)
    with pytest.raises(ValueError) as err:
        load_location_encoder(str(path))
    message = str(err.value)
    assert message.startswith(str(path))
    assert "unexpected keys (2): spa_enc.ffn.layers.0.layernorm.weight; spa_enc.ffn.layers.0.layernorm.bias" in message
    assert "spa_enc.ffn.layers.0.linear.weight: checkpoint (512, 128) vs model (512, 64)" in message


def test_bad_coordinates_through_the_api_name_the_rows(tmp_path):
    _, path = _save(tmp_path, default_params([]))
    loaded = load_location_encoder(str(path))
    with pytest.raises(ValueError, match=r"1 of 2 rows: 1 \(0.0, 95.0\)"):
        loaded.embed([[0.0, 0.0], [0.0, 95.0]])


def test_missing_checkpoint_is_a_file_not_found_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        load_location_encoder(str(tmp_path / "none.pth.tar"))


def test_module_names_are_public_api():
    assert {"LocationEncoder", "LocationImageEncoder", "FCNet", "ResLayer", "build_model", "check_lonlat",
            "load_location_encoder"} <= set(dir(models))


def test_date_model_needs_valid_dates(tmp_path):
    _, path = _save(tmp_path, default_params(["--spa_enc_type", "geo_net", "--use_date_feats", "T"]))
    loaded = load_location_encoder(str(path))
    with pytest.raises(ValueError, match="--use_date_feats T: pass dates="):
        loaded.embed([[0.0, 0.0]])
    with pytest.raises(ValueError, match=r"1 of 2 rows: 1 \(1.5,\)"):
        loaded.embed([[0.0, 0.0], [1.0, 1.0]], dates=[0.5, 1.5])
    with pytest.raises(ValueError, match=r"expected \(2,\) dates"):
        loaded.embed([[0.0, 0.0], [1.0, 1.0]], dates=[0.5])
