"""Spatial encoders (`--spa_enc_type`): a position encoding, then a network (`--spa_enc_net`: ffn or SIREN).

Each maps float32 (B, 2) (lon, lat) degrees to (B, D) embeddings (D = `--num_filts`); `encode(coords)` gives the
(B, d) position encoding. Parameter names and initialisation order are CSP's and Sphere2Vec's, so their state_dicts
load.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

from . import position_encodings as pe
from . import sphere_encodings as se

ACTIVATIONS = {
    "leakyrelu": lambda: nn.LeakyReLU(negative_slope=0.2),
    "relu": nn.ReLU,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,          # exact (erf) GELU
}


def make_activation(name):
    if name not in ACTIVATIONS:
        raise ValueError(f"--spa_f_act must be one of {', '.join(ACTIVATIONS)}, got {name!r}")
    return ACTIVATIONS[name]()


def seeded_generator(params):
    """CPU torch.Generator seeded with `params['seed']` (default 0)."""
    return torch.Generator().manual_seed(int(params.get("seed", 0)))


class Dropout(nn.Dropout):
    """`nn.Dropout` with a cheaper CPU mask (same distribution)."""

    def forward(self, x):
        if not self.training or self.p == 0:
            return x
        if x.device.type != "cpu":
            return F.dropout(x, self.p, training=True)
        if self.p == 1:
            return x * 0.0
        return x * torch.rand_like(x).ge_(self.p).mul_(1.0 / (1.0 - self.p))


class FeedForwardLayer(nn.Module):
    """Linear -> activation -> dropout (-> + x when `skip_connection` and in == out) -> LayerNorm."""

    def __init__(self, input_dim, output_dim, dropout, activation, use_layernorm, skip_connection):
        super().__init__()
        self.input_dim = input_dim
        self.output_dim = output_dim
        self.dropout = Dropout(p=dropout)
        self.act = make_activation(activation)
        self.layernorm = nn.LayerNorm(output_dim) if use_layernorm else None
        self.skip_connection = skip_connection and input_dim == output_dim
        self.linear = nn.Linear(input_dim, output_dim)
        nn.init.xavier_uniform_(self.linear.weight)

    def forward(self, x):
        y = self.dropout(self.act(self.linear(x)))
        if self.skip_connection:
            y = y + x
        if self.layernorm is not None:
            y = self.layernorm(y)
        return y


class FeedForwardNet(nn.Module):
    """`ffn`: input->hidden, (num_hidden_layer - 1) × hidden->hidden, hidden->output."""

    def __init__(self, input_dim, output_dim, num_hidden_layer, hidden_dim, dropout, activation,
                 use_layernorm, skip_connection):
        super().__init__()
        self.input_dim = input_dim
        self.output_dim = output_dim
        self.layers = nn.ModuleList()
        if num_hidden_layer <= 0:
            self.layers.append(FeedForwardLayer(input_dim, output_dim, dropout, activation, False, False))
            return
        widths = [input_dim] + [hidden_dim] * num_hidden_layer
        for layer_in, layer_out in zip(widths[:-1], widths[1:]):
            self.layers.append(FeedForwardLayer(layer_in, layer_out, dropout, activation, use_layernorm,
                                                skip_connection))
        self.layers.append(FeedForwardLayer(hidden_dim, output_dim, dropout, activation, False, False))

    @classmethod
    def from_params(cls, params, input_dim):
        """The network of a run's flags: `input_dim` in, `--num_filts` out."""
        return cls(input_dim, params["num_filts"], params["num_hidden_layer"], params["hidden_dim"],
                   params["dropout"], params["spa_f_act"], params["use_layn"], params["skip_connection"])

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


class SineLayer(nn.Module):
    """sin(w0 (x Wᵀ + b)) (SIREN, Sitzmann et al. 2020), linear when `sine` is False; W, b ~ U(-c, c), c = 1/in
    in the first layer, sqrt(6/in)/w0 after."""

    def __init__(self, input_dim, output_dim, w0, first, sine=True, dropout=0.0):
        super().__init__()
        bound = 1.0 / input_dim if first else math.sqrt(6.0 / input_dim) / w0
        self.w0 = w0
        self.sine = sine
        self.weight = nn.Parameter(torch.empty(output_dim, input_dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(output_dim).uniform_(-bound, bound))
        self.dropout = Dropout(p=dropout)

    def forward(self, x):
        y = self.dropout(F.linear(x, self.weight, self.bias))
        return torch.sin(self.w0 * y) if self.sine else y


class SirenNet(nn.Module):
    """SIREN (Rußwurm et al., ICLR 2024): `--num_hidden_layer` sine layers (w0 30, then 1), then `last_layer`."""
    FIRST_W0 = 30.0
    HIDDEN_W0 = 1.0

    def __init__(self, input_dim, output_dim, num_hidden_layer, hidden_dim, dropout):
        super().__init__()
        if num_hidden_layer < 1:
            raise ValueError(f"--spa_enc_net siren needs --num_hidden_layer >= 1 (its sine layers), "
                             f"got {num_hidden_layer}")
        widths = [input_dim] + [hidden_dim] * num_hidden_layer
        self.layers = nn.ModuleList(
            SineLayer(layer_in, layer_out, self.FIRST_W0 if index == 0 else self.HIDDEN_W0, index == 0,
                      dropout=dropout)
            for index, (layer_in, layer_out) in enumerate(zip(widths[:-1], widths[1:])))
        self.last_layer = SineLayer(hidden_dim, output_dim, self.HIDDEN_W0, False, sine=False)

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return self.last_layer(x)


NETWORKS = ("ffn", "siren")


def make_network(params, input_dim):
    name = params.get("spa_enc_net", "ffn")
    if name == "ffn":
        return FeedForwardNet.from_params(params, input_dim)
    if name == "siren":
        return SirenNet(input_dim, params["num_filts"], params["num_hidden_layer"], params["hidden_dim"],
                        params["dropout"])
    raise ValueError(f"--spa_enc_net must be one of {', '.join(NETWORKS)}, got {name!r}")


class EncodingThenNetwork(nn.Module):

    def encode(self, coords):
        raise NotImplementedError

    def forward(self, coords):
        return self.ffn(self.encode(coords))


class MultiScaleEncoder(EncodingThenNetwork):
    """Base of the sinusoidal encoders: `features_per_scale` per scale, frequencies in `freqs`."""
    features_per_scale = None
    encoding = None

    def __init__(self, params, anchors=None):
        super().__init__()
        self.ffn = make_network(params, self.encoding_dim(params["frequency_num"]))
        self.register_buffer("freqs", self.frequencies(params), persistent=False)

    def encoding_dim(self, frequency_num):
        return self.features_per_scale * frequency_num

    def frequencies(self, params):
        return encoder_frequencies(params)

    def encode(self, coords):
        return type(self).encoding(coords, self.freqs)


class GridCellEncoder(MultiScaleEncoder):
    """`gridcell` (Space2Vec "grid"); `gridcellnorm` is the same."""
    features_per_scale = 4

    def encode(self, coords):
        return pe.gridcell(coords, self.freqs)


class TheoryEncoder(MultiScaleEncoder):
    """`theory` (Space2Vec "theory"): three directions 120 degrees apart, raw degrees."""
    features_per_scale = 6
    radians = False

    def encode(self, coords):
        return pe.theory(coords, self.freqs, self.radians).flatten(1)


class TheoryNormEncoder(TheoryEncoder):
    """`theorynorm`: as `theory` with (lon, lat) in radians."""
    radians = True


class TheoryDiagEncoder(nn.Module):
    """`theorydiag`: theory features (B, F, 6) times the block-diagonal `post_mat` (F, 6, D/F),
    then the post-linear layer (`--spa_enc_use_postmat T`)."""

    def __init__(self, params, anchors=None):
        super().__init__()
        frequency_num, dim = params["frequency_num"], params["num_filts"]
        if dim % frequency_num != 0:
            raise ValueError(f"--spa_enc_type theorydiag needs --num_filts ({dim}) divisible by "
                             f"--frequency_num ({frequency_num})")
        self.register_buffer("freqs", encoder_frequencies(params), persistent=False)
        self.post_mat = nn.Parameter(torch.empty(frequency_num, 6, dim // frequency_num))
        nn.init.xavier_uniform_(self.post_mat)
        self.register_parameter("spa_postmat", self.post_mat)  # the same tensor under its second state_dict name
        self.dropout = Dropout(p=params["dropout"])
        self.use_post_mat = params["spa_enc_use_postmat"]
        if self.use_post_mat:
            self.post_linear = nn.Linear(dim, dim)
            self.dropout_ = Dropout(p=params["dropout"])
        self.f_act = make_activation(params["spa_f_act"])

    def forward(self, coords):
        feats = pe.theory(coords, self.freqs)                              # (B, F, 6)
        x = torch.einsum("bfs,fsd->bfd", feats, self.post_mat).flatten(1)   # (B, D)
        if self.use_post_mat:
            return self.f_act(self.dropout_(self.post_linear(self.dropout(x))))
        return self.f_act(self.dropout(x))


class HexaGridCellEncoder(nn.Module):
    """`hexagridcell`: three phase-shifted sines per coordinate and scale."""

    def __init__(self, params, anchors=None):
        super().__init__()
        frequency_num = params["frequency_num"]
        self.register_buffer("divisors", pe.hexagridcell_divisors(frequency_num, params["max_radius"]),
                             persistent=False)
        self.post_linear = nn.Linear(6 * frequency_num, params["num_filts"])
        nn.init.xavier_uniform_(self.post_linear.weight)
        self.dropout = Dropout(p=params["dropout"])
        self.f_act = make_activation(params["spa_f_act"])

    def forward(self, coords):
        return self.f_act(self.dropout(self.post_linear(pe.hexagridcell(coords, self.divisors))))


class NaiveEncoder(EncodingThenNetwork):
    """`naive`: (lon, lat) min-max normalised by `--map_range` onto [-1, 1]."""

    def __init__(self, params, anchors=None):
        super().__init__()
        self.ffn = make_network(params, 2)
        self.extent = tuple(float(v) for v in params["map_range"][:4])

    def encode(self, coords):
        return pe.min_max_normalise(coords, self.extent)


class RBFEncoder(EncodingThenNetwork):
    """`rbf`: Gaussian kernels (sigma `--rbf_kernal_size` degrees) around `anchors` (K, 2) (lon, lat) degrees
    (not in the state_dict)."""

    def __init__(self, params, anchors=None):
        super().__init__()
        count = params["num_rbf_anchor_pts"]
        if anchors is None:
            raise ValueError("--spa_enc_type rbf needs its anchor points: the training locations "
                             "train_locs[params['rbf_anchor_pt_ids']] as a (K, 2) (lon, lat) array; pass anchors=...")
        anchors = torch.as_tensor(anchors, dtype=torch.float32, device="cpu")
        if anchors.shape != (count, 2):
            raise ValueError(f"rbf anchors must have shape ({count}, 2) for --num_rbf_anchor_pts {count}, "
                             f"got {tuple(anchors.shape)}")
        self.ffn = make_network(params, count)
        self.kernel_size = float(params["rbf_kernal_size"])
        variance = 2.0 * self.kernel_size ** 2
        if not (variance > 0 and math.isfinite(1.0 / variance)):
            raise ValueError(f"--rbf_kernal_size {params['rbf_kernal_size']} is too small: its square underflows "
                             f"(the kernel width in degrees; e.g. 1)")
        self.register_buffer("anchors", anchors.clone(), persistent=False)

    def encode(self, coords):
        return pe.rbf(coords, self.anchors, self.kernel_size)


class RFFEncoder(EncodingThenNetwork):
    """`rff`: random Fourier features, W (2, F) ~ N(0, rbf_kernal_size I), b (F) ~ U(0, 2π)."""

    def __init__(self, params, anchors=None):
        super().__init__()
        frequency_num = params["frequency_num"]
        ffn = make_network(params, frequency_num)
        generator = seeded_generator(params)
        dirvec = torch.randn(frequency_num, 2, dtype=torch.float64, generator=generator).T
        dirvec = dirvec * math.sqrt(params["rbf_kernal_size"])
        shift = torch.rand(frequency_num, dtype=torch.float64, generator=generator) * (2.0 * math.pi)
        self.dirvec = nn.Parameter(dirvec.float().contiguous(), requires_grad=False)
        self.shift = nn.Parameter(shift.float(), requires_grad=False)
        self.ffn = ffn
        self.extent = tuple(float(v) for v in params["map_range"][:4])

    def encode(self, coords):
        return pe.random_fourier(coords, self.extent, self.dirvec, self.shift)


class WrapFFNEncoder(EncodingThenNetwork):
    """`wrap_ffn` = `geo_net_fft`: the wrap encoding of Mac Aodha et al. 2019, then ffn."""

    def __init__(self, params, anchors=None):
        super().__init__()
        self.ffn = make_network(params, 4)

    def encode(self, coords):
        return pe.wrap(coords)


class XYZEncoder(EncodingThenNetwork):
    """`xyz`: the point on the unit sphere, then ffn (3 inputs)."""

    def __init__(self, params, anchors=None):
        super().__init__()
        self.ffn = make_network(params, 3)

    def encode(self, coords):
        return se.xyz(coords)


class NeRFEncoder(EncodingThenNetwork):
    """`nerf`: NeRF's sin/cos of the unit-sphere point at frequencies π 2^s, s < `--frequency_num` (6F inputs)."""

    def __init__(self, params, anchors=None):
        super().__init__()
        frequency_num = TORCHSPATIAL_NERF_FREQUENCIES if from_torchspatial(params) else params["frequency_num"]
        self.ffn = make_network(params, 6 * frequency_num)
        self.register_buffer("freqs", pe.frequency_list("nerf", frequency_num, None, None), persistent=False)

    def encode(self, coords):
        return se.nerf(coords, self.freqs)


class SphereCEncoder(MultiScaleEncoder):
    """`sphere` (Sphere2Vec sphereC), 3F inputs."""
    features_per_scale = 3
    encoding = staticmethod(se.sphere_c)


class SphereCPlusEncoder(MultiScaleEncoder):
    """`spheregrid` (Sphere2Vec sphereC+), 6F inputs."""
    features_per_scale = 6
    encoding = staticmethod(se.sphere_c_plus)


class SphereMEncoder(MultiScaleEncoder):
    """`spheremixscale` (Sphere2Vec sphereM), 5F inputs."""
    features_per_scale = 5
    encoding = staticmethod(se.sphere_m)


class TorchSpatialScheduleEncoder(MultiScaleEncoder):
    """Encoders whose TorchSpatial checkpoints use its frequency schedule."""

    def frequencies(self, params):
        if from_torchspatial(params):
            return se.torchspatial_frequencies(params["frequency_num"], params["max_radius"])
        return encoder_frequencies(params)


class SphereMPlusEncoder(TorchSpatialScheduleEncoder):
    """`spheregridmixscale` (Sphere2Vec sphereM+), 8F inputs."""
    features_per_scale = 8
    encoding = staticmethod(se.sphere_m_plus)


class DFSEncoder(TorchSpatialScheduleEncoder):
    """`dft` (Sphere2Vec dfs, the double Fourier sphere), 4F^2 + 4F inputs."""
    encoding = staticmethod(se.dfs)

    def encoding_dim(self, frequency_num):
        return 4 * frequency_num * frequency_num + 4 * frequency_num


class TileFFNEncoder(EncodingThenNetwork):
    """`tile_ffn` (TorchSpatial): a learned vector per `--min_radius`-degree cell, then ffn."""
    MAX_CELLS = 2 ** 20

    def __init__(self, params, anchors=None):
        super().__init__()
        self.extent = tuple(float(v) for v in params["map_range"][:4])
        self.cell_size = TORCHSPATIAL_TILE_SIZE if from_torchspatial(params) else float(params["min_radius"])
        if not self.cell_size > 0:
            raise ValueError(f"--spa_enc_type tile_ffn: --min_radius (the cell size in degrees) must be > 0, "
                             f"got {self.cell_size}")
        xmin, xmax, ymin, ymax = self.extent
        self.columns = max(1, math.ceil((xmax - xmin) / self.cell_size))
        self.rows = max(1, math.ceil((ymax - ymin) / self.cell_size))
        if self.columns * self.rows > self.MAX_CELLS:
            raise ValueError(f"--spa_enc_type tile_ffn: cells of --min_radius {self.cell_size:g} degrees over "
                             f"--map_range {' '.join(f'{v:g}' for v in self.extent)} make "
                             f"{self.columns * self.rows:,} cells (at most {self.MAX_CELLS:,}); give a larger "
                             f"--min_radius, e.g. 1")
        dim = params["num_filts"]
        self.embedding = nn.Embedding(self.columns * self.rows, dim)
        nn.init.normal_(self.embedding.weight, 0.0, 1.0 / dim)
        self.ffn = make_network(params, dim)

    def encode(self, coords):
        return self.embedding(se.tile_index(coords, self.extent, self.cell_size, self.columns, self.rows))


class SphericalHarmonicsEncoder(EncodingThenNetwork):
    """`spherical_harmonics`: the L² real spherical harmonics, L = `--legendre_poly_num`."""

    def __init__(self, params, anchors=None):
        super().__init__()
        self.degrees = int(params.get("legendre_poly_num", DEFAULT_LEGENDRE_POLY_NUM))
        if self.degrees < 1:
            raise ValueError(f"--legendre_poly_num must be >= 1, got {self.degrees}")
        self.ffn = make_network(params, self.degrees ** 2)

    def encode(self, coords):
        return se.spherical_harmonics(coords, self.degrees)


# TorchSpatial's NeRF always has 16 frequencies; its tile_ffn's cell size stays at its default of 10^6
TORCHSPATIAL_NERF_FREQUENCIES = 16
TORCHSPATIAL_TILE_SIZE = 1e6
DEFAULT_LEGENDRE_POLY_NUM = 10
# params['encoding_source'] of a checkpoint written by TorchSpatial (set by peer_checkpoints)
TORCHSPATIAL = "torchspatial"


def from_torchspatial(params):
    return params.get("encoding_source") == TORCHSPATIAL


def encoder_frequencies(params):
    """float64 frequencies of a run's flags."""
    return pe.frequency_list(params["freq_init"], params["frequency_num"], params["max_radius"],
                             params["min_radius"], generator=seeded_generator(params))


SPATIAL_ENCODERS = {
    "gridcell": GridCellEncoder,
    "gridcellnorm": GridCellEncoder,
    "hexagridcell": HexaGridCellEncoder,
    "theory": TheoryEncoder,
    "theorynorm": TheoryNormEncoder,
    "theorydiag": TheoryDiagEncoder,
    "naive": NaiveEncoder,
    "rbf": RBFEncoder,
    "rff": RFFEncoder,
    "geo_net_fft": WrapFFNEncoder,
    "wrap_ffn": WrapFFNEncoder,
    "xyz": XYZEncoder,
    "nerf": NeRFEncoder,
    "sphere": SphereCEncoder,
    "spheregrid": SphereCPlusEncoder,
    "spheremixscale": SphereMEncoder,
    "spheregridmixscale": SphereMPlusEncoder,
    "dft": DFSEncoder,
    "tile_ffn": TileFFNEncoder,
    "spherical_harmonics": SphericalHarmonicsEncoder,
}


def build_spatial_encoder(params, anchors=None):
    """The spatial encoder of `--spa_enc_type` (not geo_net) on the CPU; `anchors` for rbf only."""
    name = params["spa_enc_type"]
    if name not in SPATIAL_ENCODERS:
        raise ValueError(f"--spa_enc_type {name!r} has no location encoder; choose one of "
                         f"{', '.join(SPATIAL_ENCODERS)} or geo_net")
    encoder = SPATIAL_ENCODERS[name]
    if params.get("spa_enc_net", "ffn") != "ffn" and not issubclass(encoder, EncodingThenNetwork):
        raise ValueError(f"--spa_enc_net {params['spa_enc_net']}: --spa_enc_type {name} has no separate network "
                         f"after its encoding; use --spa_enc_net ffn, or an encoder of "
                         f"{', '.join(n for n, c in SPATIAL_ENCODERS.items() if issubclass(c, EncodingThenNetwork))}")
    return encoder(params, anchors=anchors)
