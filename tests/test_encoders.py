import math

import numpy as np
import pytest
import torch

from csp import encoders
from csp import position_encodings as pe
from csp.arguments import parse_flags
from csp.encoders import SPATIAL_ENCODERS, build_spatial_encoder
from csp.models import build_model

INAT_FLAGS = ["--frequency_num", "32", "--max_radius", "360", "--min_radius", "0.1"]
COORDS = torch.tensor([[-180.0, -90.0], [180.0, 90.0], [0.0, 0.0], [12.345, -67.891], [-179.99, 45.5]])
ANCHORS = torch.tensor([[0.0, 0.0], [10.0, 20.0], [-100.0, -30.0]])
EXTRA_FLAGS = {"tile_ffn": ["--min_radius", "10"]}   # cells of 10 degrees


def _params(*flags):
    return parse_flags(list(flags))


def _inat_encoder(name):
    """The encoder `name` with the iNat script's frequencies, 3 rbf anchors, in eval mode."""
    params = _params("--spa_enc_type", name, "--num_rbf_anchor_pts", "3", *INAT_FLAGS, *EXTRA_FLAGS.get(name, ()))
    return build_spatial_encoder(params, anchors=ANCHORS).eval()


def _geometric(frequency_num, max_radius, min_radius):
    return np.array([1.0 / (min_radius * (max_radius / min_radius) ** (s / (frequency_num - 1)))
                     for s in range(frequency_num)])


def test_frequency_lists():
    freqs = pe.frequency_list("geometric", 32, 360.0, 0.1)
    assert freqs.dtype == torch.float64
    np.testing.assert_allclose(freqs.numpy(), _geometric(32, 360.0, 0.1), rtol=1e-12)
    assert freqs[0].item() == pytest.approx(10.0) and freqs[-1].item() == pytest.approx(1 / 360)
    np.testing.assert_allclose(pe.frequency_list("nerf", 4, 1, 1).numpy(), np.pi * np.array([1, 2, 4, 8]))
    with pytest.raises(ValueError, match="--freq_init"):
        pe.frequency_list("linear", 4, 1, 1)


def test_extreme_radii_give_finite_frequencies_or_a_named_error():
    """max/min overflowing made the first frequency NaN; a denormal --min_radius an infinite one (both trained
    NaN models, blamed on the learning rate)."""
    freqs = pe.frequency_list("geometric", 4, 1e300, 1e-10)
    assert torch.isfinite(freqs).all() and freqs[0].item() == pytest.approx(1e10)
    with pytest.raises(ValueError, match="--min_radius 5e-324 is too small"):
        pe.frequency_list("geometric", 4, 1.0, 5e-324)


@pytest.mark.parametrize("scales, flag", [((360.0, 0.0), "--min_radius"), ((-1.0, 0.1), "--max_radius")])
def test_non_positive_scales_are_named(scales, flag):
    """--min_radius 0 was a ZeroDivisionError, a negative radius a 'math domain error' or NaN encodings."""
    with pytest.raises(ValueError, match=f"{flag} must be > 0"):
        pe.frequency_list("geometric", 8, *scales)
    if flag == "--max_radius":
        with pytest.raises(ValueError, match="--max_radius must be > 0"):
            pe.hexagridcell_divisors(8, scales[0])


def test_gridcell_layout_is_coordinate_major_sin_cos_in_float64_precision():
    freqs = pe.frequency_list("geometric", 16, 1.0, 1e-6)      # angles up to 1.8e8 rad
    out = pe.gridcell(COORDS, freqs)
    coords, f = COORDS.double().numpy(), freqs.numpy()
    expected = np.zeros((len(coords), 4 * 16))
    for c in range(2):
        for s in range(16):
            expected[:, c * 32 + 2 * s] = np.sin(coords[:, c] * f[s])
            expected[:, c * 32 + 2 * s + 1] = np.cos(coords[:, c] * f[s])
    assert out.dtype == torch.float32
    np.testing.assert_allclose(out.numpy(), expected, atol=1e-6)


def test_theory_layout_is_frequency_major_over_three_directions():
    freqs = pe.frequency_list("geometric", 8, 360.0, 0.1)
    out = pe.theory(COORDS, freqs).flatten(1)
    radians_out = pe.theory(COORDS, freqs, radians=True).flatten(1)
    units = [(1.0, 0.0), (-0.5, math.sqrt(3) / 2), (-0.5, -math.sqrt(3) / 2)]
    for coords, result in ((COORDS.double().numpy(), out), (np.radians(COORDS.double().numpy()), radians_out)):
        expected = np.zeros((len(coords), 48))
        for s, f in enumerate(freqs.numpy()):
            for k, (ux, uy) in enumerate(units):
                angle = (coords[:, 0] * ux + coords[:, 1] * uy) * f
                expected[:, 6 * s + 2 * k] = np.sin(angle)
                expected[:, 6 * s + 2 * k + 1] = np.cos(angle)
        np.testing.assert_allclose(result.numpy(), expected, atol=1e-6)


def test_hexagridcell_encoding():
    divisors = pe.hexagridcell_divisors(4, 360.0)
    out = pe.hexagridcell(COORDS, divisors)
    coords = COORDS.double().numpy()
    expected = np.zeros((len(coords), 24))
    for c in range(2):
        for s in range(4):
            angle = coords[:, c] / 360.0 ** (s / 3)
            for k in range(3):
                expected[:, c * 12 + 3 * s + k] = np.sin(angle + k * 2 * np.pi / 3)
    np.testing.assert_allclose(out.numpy(), expected, atol=1e-6)


def test_simple_encodings():
    lon, lat = COORDS[:, 0].double().numpy(), COORDS[:, 1].double().numpy()
    x, y = lon / 180, lat / 90
    wrapped = np.stack([np.sin(np.pi * x), np.sin(np.pi * y), np.cos(np.pi * x), np.cos(np.pi * y)], 1)
    np.testing.assert_allclose(pe.wrap(COORDS).numpy(), wrapped, atol=1e-6)
    np.testing.assert_allclose(pe.min_max_normalise(COORDS, (-180, 180, -90, 90)).numpy(), np.stack([x, y], 1),
                               atol=1e-7)
    np.testing.assert_allclose(pe.min_max_normalise(COORDS, (0, 10, 0, 10)).numpy()[2], [-1, -1])
    distances = ((lon[:, None] - ANCHORS[:, 0].numpy()) ** 2 + (lat[:, None] - ANCHORS[:, 1].numpy()) ** 2)
    np.testing.assert_allclose(pe.rbf(COORDS, ANCHORS, 30.0).numpy(), np.exp(-distances / (2 * 30.0 ** 2)),
                               atol=1e-7)


@pytest.mark.parametrize("name", sorted(SPATIAL_ENCODERS))
def test_every_encoder_maps_lonlat_to_the_embedding_without_touching_its_input(name):
    encoder = _inat_encoder(name)
    coords = COORDS.clone()
    out = encoder(coords)
    assert out.shape == (len(COORDS), 256) and out.dtype == torch.float32 and torch.isfinite(out).all()
    assert torch.equal(coords, COORDS)


def test_unknown_encoder_names_the_choices():
    with pytest.raises(ValueError, match="'grid' has no location encoder; choose one of gridcell, gridcellnorm"):
        build_spatial_encoder(_params("--spa_enc_type", "grid"))


def test_feed_forward_network_structure_and_formula():
    params = _params("--num_hidden_layer", "2", "--hidden_dim", "8", "--num_filts", "4", "--spa_f_act", "leakyrelu",
                     "--dropout", "0.3")
    ffn = encoders.FeedForwardNet.from_params(params, 8).eval()
    first, hidden, last = ffn.layers
    assert [layer.linear.weight.shape for layer in ffn.layers] == [(8, 8), (8, 8), (4, 8)]
    assert first.layernorm is not None and hidden.layernorm is not None and last.layernorm is None
    # the residual needs in == out and is never on the output layer
    assert first.skip_connection and hidden.skip_connection and not last.skip_connection
    assert first.dropout.p == 0.3 and first.act.negative_slope == 0.2
    x = torch.randn(5, 8)
    y = x
    for layer in (first, hidden):
        y = torch.nn.functional.layer_norm(torch.nn.functional.leaky_relu(layer.linear(y), 0.2) + y, (8,),
                                           layer.layernorm.weight, layer.layernorm.bias, eps=1e-5)
    y = torch.nn.functional.leaky_relu(last.linear(y), 0.2)
    torch.testing.assert_close(ffn(x), y)
    no_layn = encoders.FeedForwardNet.from_params(_params("--use_layn", "F", "--skip_connection", "F",
                                                          "--num_hidden_layer", "0"), 8)
    assert len(no_layn.layers) == 1 and no_layn.layers[0].layernorm is None


@pytest.mark.parametrize("p", [0.0, 0.3, 0.5, 1.0])
def test_dropout_zeroes_with_probability_p_scales_the_rest_and_is_off_in_eval_mode(p):
    torch.manual_seed(0)
    dropout = encoders.Dropout(p=p)
    assert isinstance(dropout, torch.nn.Dropout) and dropout.p == p and not list(dropout.parameters())
    x = torch.rand(400, 500).add_(0.5).requires_grad_()
    y = dropout(x)
    kept = y != 0
    assert kept.float().mean().item() == pytest.approx(1 - p, abs=0.005)
    if p < 1:
        torch.testing.assert_close(y[kept], x[kept] / (1 - p), rtol=1e-6, atol=0)
    y.sum().backward()
    torch.testing.assert_close(x.grad, kept / (1 - p) if p < 1 else torch.zeros_like(x))
    assert dropout.eval()(x) is x
    torch.manual_seed(5)
    first = dropout.train()(x)
    torch.manual_seed(5)
    assert torch.equal(first, dropout(x))                  # the mask comes from torch's seeded stream


def test_dropout_leaves_the_state_dict_as_the_original():
    encoder = build_spatial_encoder(_params(*INAT_FLAGS))
    assert all(isinstance(layer.dropout, encoders.Dropout) for layer in encoder.ffn.layers)
    assert not any("dropout" in key for key in encoder.state_dict())


@pytest.mark.parametrize("name, check", [
    ("leakyrelu", lambda x: torch.where(x > 0, x, 0.2 * x)),
    ("relu", torch.relu),
    ("sigmoid", torch.sigmoid),
    ("tanh", torch.tanh),
    ("gelu", lambda x: 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))),
])
def test_activations(name, check):
    x = torch.linspace(-3, 3, 13)
    torch.testing.assert_close(encoders.make_activation(name)(x), check(x))


def test_unknown_activation_names_the_flag():
    with pytest.raises(ValueError, match="--spa_f_act must be one of leakyrelu, relu, sigmoid, tanh, gelu"):
        encoders.make_activation("swish")


def test_layers_get_torch_default_init_then_xavier_in_construction_order():
    torch.manual_seed(3)
    encoder = build_spatial_encoder(_params(*INAT_FLAGS))
    torch.manual_seed(3)
    first = torch.nn.Linear(128, 512)
    torch.nn.init.xavier_uniform_(first.weight)
    torch.testing.assert_close(encoder.ffn.layers[0].linear.weight, first.weight, rtol=0, atol=0)
    torch.testing.assert_close(encoder.ffn.layers[0].linear.bias, first.bias, rtol=0, atol=0)


def test_random_frequencies_are_reproducible_and_not_in_the_state_dict():
    def build(seed):
        return build_spatial_encoder(_params("--freq_init", "random", "--max_radius", "5", "--seed", str(seed)))

    first, again, other = build(1), build(1), build(2)
    assert torch.equal(first.freqs, again.freqs) and not torch.equal(first.freqs, other.freqs)
    assert ((first.freqs >= 0) & (first.freqs < 5)).all()
    assert not any("freqs" in key for key in first.state_dict())


def test_rff_fixed_parameters_come_from_the_seed():
    params = _params("--spa_enc_type", "rff", "--frequency_num", "4096", "--rbf_kernal_size", "4.0")
    encoder, again = build_spatial_encoder(params), build_spatial_encoder(params)
    assert list(encoder.state_dict())[:2] == ["dirvec", "shift"]
    assert not encoder.dirvec.requires_grad and torch.equal(encoder.dirvec, again.dirvec)
    assert encoder.dirvec.shape == (2, 4096) and encoder.dirvec.std().item() == pytest.approx(2.0, rel=0.05)
    assert 0 <= encoder.shift.min() and encoder.shift.max() < 2 * math.pi


def test_theorydiag_post_mat_alias_and_dimension_check():
    encoder = build_spatial_encoder(_params("--spa_enc_type", "theorydiag", *INAT_FLAGS))
    assert encoder.spa_postmat is encoder.post_mat and encoder.post_mat.shape == (32, 6, 8)
    no_post = build_spatial_encoder(_params("--spa_enc_type", "theorydiag", "--spa_enc_use_postmat", "F"))
    assert not hasattr(no_post, "post_linear")
    with pytest.raises(ValueError, match="--num_filts \\(256\\) divisible by --frequency_num \\(24\\)"):
        build_spatial_encoder(_params("--spa_enc_type", "theorydiag", "--frequency_num", "24"))


def test_rbf_without_anchors_says_what_is_needed():
    with pytest.raises(ValueError, match=r"rbf_anchor_pt_ids"):
        build_spatial_encoder(_params("--spa_enc_type", "rbf"))
    with pytest.raises(ValueError, match=r"shape \(200, 2\)"):
        build_spatial_encoder(_params("--spa_enc_type", "rbf"), anchors=ANCHORS)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("name", sorted(SPATIAL_ENCODERS))
def test_gpu_matches_cpu(name):
    encoder = _inat_encoder(name)
    expected = encoder(COORDS)
    torch.testing.assert_close(encoder.cuda()(COORDS.cuda()).cpu(), expected, rtol=0, atol=2e-6)


NEW_ENCODERS = {  # --spa_enc_type: input width of the network for F = 32 scales (iNat flags), L = 10
    "xyz": 3, "nerf": 6 * 32, "sphere": 3 * 32, "spheregrid": 6 * 32, "spheremixscale": 5 * 32,
    "spheregridmixscale": 8 * 32, "dft": 4 * 32 * 32 + 4 * 32, "wrap_ffn": 4, "tile_ffn": 256,
    "spherical_harmonics": 100}


@pytest.mark.parametrize("name, width", NEW_ENCODERS.items())
def test_new_encoders_feed_their_encoding_to_the_network(name, width):
    encoder = _inat_encoder(name)
    encoding = encoder.encode(COORDS)
    assert encoding.shape == (len(COORDS), width) and encoding.dtype == torch.float32
    assert encoder.ffn.input_dim == width
    torch.testing.assert_close(encoder(COORDS), encoder.ffn(encoding))
    # Sphere2Vec's module tree: the network is `ffn`, so its state_dict keys are spa_enc.ffn.layers.*
    assert all(key.startswith(("ffn.layers.", "embedding.")) for key in encoder.state_dict())


def test_siren_network_structure_initialisation_and_formula():
    params = _params("--spa_enc_type", "spherical_harmonics", "--legendre_poly_num", "4", "--spa_enc_net", "siren",
                     "--num_hidden_layer", "2", "--hidden_dim", "64", "--num_filts", "8", "--dropout", "0")
    torch.manual_seed(0)
    encoder = build_spatial_encoder(params).eval()
    net = encoder.ffn
    assert isinstance(net, encoders.SirenNet)
    assert sorted(net.state_dict()) == ["last_layer.bias", "last_layer.weight", "layers.0.bias", "layers.0.weight",
                                        "layers.1.bias", "layers.1.weight"]
    first, hidden = net.layers
    assert first.weight.shape == (64, 16) and first.weight.abs().max() <= 1 / 16 and first.w0 == 30
    assert hidden.weight.abs().max() <= math.sqrt(6 / 64) and hidden.w0 == 1
    assert hidden.weight.abs().max() > 0.9 * math.sqrt(6 / 64)          # U(-c, c) fills its range
    x = encoder.encode(COORDS)
    y = torch.sin(30 * (x @ first.weight.T + first.bias))
    y = torch.sin(y @ hidden.weight.T + hidden.bias)
    torch.testing.assert_close(encoder(COORDS), y @ net.last_layer.weight.T + net.last_layer.bias)


def test_siren_is_selectable_for_every_encoding_with_a_network():
    for name, encoder_class in SPATIAL_ENCODERS.items():
        params = _params("--spa_enc_type", name, "--spa_enc_net", "siren", "--num_rbf_anchor_pts", "3", *INAT_FLAGS,
                         *EXTRA_FLAGS.get(name, ()))
        if issubclass(encoder_class, encoders.EncodingThenNetwork):
            assert isinstance(build_spatial_encoder(params, anchors=ANCHORS).ffn, encoders.SirenNet)
        else:
            with pytest.raises(ValueError, match="has no separate network"):
                build_spatial_encoder(params, anchors=ANCHORS)
    with pytest.raises(ValueError, match="geo_net has its own network"):
        build_model(_params("--spa_enc_type", "geo_net", "--spa_enc_net", "siren"), 3, 1)
    with pytest.raises(ValueError, match="--spa_enc_net must be one of ffn, siren"):
        build_spatial_encoder(_params("--spa_enc_net", "mlp"))
    with pytest.raises(ValueError, match="--num_hidden_layer >= 1"):
        build_spatial_encoder(_params("--spa_enc_net", "siren", "--num_hidden_layer", "0"))


@pytest.mark.parametrize("name, extra", [(name, EXTRA_FLAGS.get(name, [])) for name in NEW_ENCODERS]
                         + [("spherical_harmonics", ["--spa_enc_net", "siren"])])
def test_seeded_one_epoch_csp_run_of_every_new_encoder(name, extra, synthetic_data_dir, tmp_path, monkeypatch):
    """One pre-training (CSP-MC-BLD) and one fine-tuning epoch on tiny synthetic data; the fine-tuned checkpoint
    reloads and reproduces the run's embeddings."""
    from csp import train_unsuper
    from csp.models import load_location_encoder

    tiny_fmow = synthetic_data_dir("fmow", num_train=200, num_val=40, num_classes=5, feat_dim=8)
    monkeypatch.setenv("CSP_DATA_DIR", str(tiny_fmow))
    flags = ["--dataset", "fmow", "--device", "cpu", "--model_dir", str(tmp_path), "--seed", "3",
             "--spa_enc_type", name, "--frequency_num", "4", "--max_radius", "360", "--min_radius", "1",
             "--legendre_poly_num", "4", "--num_hidden_layer", "1", "--hidden_dim", "16", "--num_filts", "16",
             "--unsuper_loss", "contsoftmax", "--simcse_weight", "1", "--num_epochs_unsuper", "1", "--num_epochs", "1",
             "--batch_size", "64", "--train_sample_ratio", "0.05", "--cnn_pred_type", "fewshot",
             "--inat2018_resolution", "pretrain", "--do_unsuper_train", "T", *extra]
    results = train_unsuper.main(flags)
    assert results["phases"]["fine-tuning"]["epochs_done"] == 1
    final = [block for block in results["evaluations"]
             if block["epoch"] is None and block["method"] == "location_prior"]
    assert final and 0 <= final[-1]["splits"][0]["top1"] <= 100
    encoder = load_location_encoder(results["files"]["model_file_name"])
    embeddings = encoder.embed(COORDS)
    assert embeddings.shape == (len(COORDS), 16) and torch.isfinite(embeddings).all()
