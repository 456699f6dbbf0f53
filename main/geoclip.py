"""GeoCLIP's pretrained location encoder (Vivanco Cepeda, Nayak, Shah; NeurIPS 2023), rebuilt here.

e(x) = sum over three branches b of MLP_b(RFF_b(EqualEarth(x))): the Equal Earth projection (Šavrič et al. 2018)
scaled by 66.50336 / 180, random Fourier features [cos 2πBv, sin 2πBv] with a fixed (256, 2) matrix B per branch
(drawn with sigma 2^0, 2^4, 2^8), then Linear 512→1024, three ReLU layers to 1024 and a Linear to 512. The output is
the (N, 512) embedding, not normalised (GeoCLIP L2-normalises it in its contrastive loss).

The weights ship in the `geoclip` wheel (MIT licence; `pip install --no-deps geoclip`, only its weight file is
read): `geoclip/model/weights/location_encoder_weights.pth`, keys `LocEnc{b}.capsule.0.b`, `LocEnc{b}.capsule.{1,3,5}`
(the hidden layers) and `LocEnc{b}.head.0` (the output layer). GeoCLIP's own module takes (lat, lon); this one, as
every encoder of this project, takes (lon, lat) in degrees. The projection and the features are computed in float32
in GeoCLIP's order of operations: the phases 2πBv reach thousands of radians, where any other rounding changes the
output by ~1e-4.
"""
import math
import re

import torch
from torch import nn

from .paths import package_file

SIGMAS = (2.0 ** 0, 2.0 ** 4, 2.0 ** 8)
NUM_FREQUENCIES = 256
HIDDEN_DIM = 1024
EMBEDDING_DIM = 512
# Equal Earth polynomial coefficients and GeoCLIP's scale of the projected coordinates
A1, A2, A3, A4 = 1.340264, -0.081106, 0.000893, 0.003796
SCALE = 66.50336
WEIGHTS = ("geoclip", "model", "weights", "location_encoder_weights.pth")
INSTALL = "pip install --no-deps geoclip==1.3.0"
# GeoCLIP's key → this module's key: its Sequential indices 1, 3, 5 are the hidden layers, head.0 the output
KEY_PATTERNS = ((r"LocEnc(\d+)\.capsule\.0\.b", r"branches.\1.frequencies"),
                (r"LocEnc(\d+)\.capsule\.1\.", r"branches.\1.mlp.0."),
                (r"LocEnc(\d+)\.capsule\.3\.", r"branches.\1.mlp.2."),
                (r"LocEnc(\d+)\.capsule\.5\.", r"branches.\1.mlp.4."),
                (r"LocEnc(\d+)\.head\.0\.", r"branches.\1.mlp.6."))


def equal_earth(coords):
    """(N, 2) float32 (lon, lat) degrees → (N, 2) float32 Equal Earth (x, y) times 66.50336 / 180 (GeoCLIP's scale:
    x in about [-1.5, 1.5], y in [-0.72, 0.72])."""
    lon, lat = torch.deg2rad(coords[:, 0]), torch.deg2rad(coords[:, 1])
    root3 = torch.sqrt(torch.tensor(3.0, device=coords.device))
    theta = torch.asin((root3 / 2) * torch.sin(lat))
    slope = 3 * (9 * A4 * theta ** 8 + 7 * A3 * theta ** 6 + 3 * A2 * theta ** 2 + A1)
    x = (2 * root3 * lon * torch.cos(theta)) / slope
    y = A4 * theta ** 9 + A3 * theta ** 7 + A2 * theta ** 3 + A1 * theta
    return torch.stack((x, y), dim=1) * SCALE / 180


class Branch(nn.Module):
    """One scale: random Fourier features of the projected point with `frequencies` B (256, 2), then the MLP."""

    def __init__(self, sigma):
        super().__init__()
        self.frequencies = nn.Parameter(torch.randn(NUM_FREQUENCIES, 2) * sigma, requires_grad=False)
        self.mlp = nn.Sequential(nn.Linear(2 * NUM_FREQUENCIES, HIDDEN_DIM), nn.ReLU(),
                                 nn.Linear(HIDDEN_DIM, HIDDEN_DIM), nn.ReLU(),
                                 nn.Linear(HIDDEN_DIM, HIDDEN_DIM), nn.ReLU(),
                                 nn.Linear(HIDDEN_DIM, EMBEDDING_DIM))

    def forward(self, projected):
        phases = 2 * math.pi * projected @ self.frequencies.T
        return self.mlp(torch.cat((torch.cos(phases), torch.sin(phases)), dim=-1))


class GeoCLIPLocationEncoder(nn.Module):
    """(N, 2) float32 (lon, lat) degrees → (N, 512) GeoCLIP location embedding (module doc)."""

    def __init__(self):
        super().__init__()
        self.branches = nn.ModuleList(Branch(sigma) for sigma in SIGMAS)

    def forward(self, coords):
        projected = equal_earth(coords)
        out = self.branches[0](projected)
        for branch in self.branches[1:]:
            out = out + branch(projected)
        return out


def weights_path():
    """The weight file inside the installed `geoclip` wheel (FileNotFoundError with the install command if not)."""
    return package_file(WEIGHTS[0], *WEIGHTS[1:], install=INSTALL)


def from_geoclip_keys(state_dict):
    """GeoCLIP's state_dict in this module's key names (keys it does not know are kept as they are)."""
    renamed = {}
    for key, value in state_dict.items():
        for pattern, replacement in KEY_PATTERNS:
            key = re.sub(pattern, replacement, key)
        renamed[key] = value
    return renamed


def is_geoclip_state(state_dict):
    """True for a dict in the format of GeoCLIP's location-encoder weight file."""
    return isinstance(state_dict, dict) and "LocEnc0.capsule.0.b" in state_dict


def load_geoclip(path=None, device="cpu"):
    """The GeoCLIP location encoder with the weights of `path` (default: the installed wheel's file), in eval mode
    on `device`. ValueError when the file is not a GeoCLIP location-encoder weight file."""
    path = weights_path() if path is None else path
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as err:  # not a torch file, truncated, or holding other objects
        raise ValueError(f"{path} is not a readable GeoCLIP weight file: {str(err).splitlines()[0]}") from None
    return geoclip_from_state(state, path, device)


def geoclip_from_state(state, path, device="cpu"):
    """`load_geoclip` of the already loaded state dict `state` of the file `path` (named in errors)."""
    if not is_geoclip_state(state):
        raise ValueError(f"{path} is not a GeoCLIP location-encoder weight file (no key LocEnc0.capsule.0.b); give "
                         f"geoclip's model/weights/location_encoder_weights.pth")
    model = GeoCLIPLocationEncoder()
    try:
        model.load_state_dict(from_geoclip_keys(state), strict=True)
    except RuntimeError as err:
        raise ValueError(f"{path}: the weights do not fit GeoCLIP's location encoder: "
                         f"{str(err).splitlines()[0]}") from None
    return model.to(device).eval()
