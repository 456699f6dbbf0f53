"""SatCLIP-format location encoders (Klemmer et al. 2023; microsoft/satclip): spherical harmonics + SIREN, read
from a local checkpoint file (nothing is downloaded; the released files come from SatCLIP's model pages).

A SatCLIP checkpoint is a PyTorch Lightning file: `hyper_parameters` (`le_type` 'sphericalharmonics', `pe_type`
'siren', `legendre_polys` L, `harmonics_calculation` 'analytic' or 'closed-form', `embed_dim`, `capacity` = the
SIREN width, `num_hidden_layers`) and `state_dict` with the SIREN under `model.location.nnet.` (`layers.{i}.weight`,
`layers.{i}.bias`, `last_layer.weight`, `last_layer.bias`: the names of `encoders.SirenNet`).

SatCLIP evaluates its harmonics at phi = lon + 180 deg and theta = lat + 90 deg, which flips each degree l by
(-1)^l against the usual colatitude and azimuth of `sphere_encodings.spherical_harmonics`; its 'analytic' tables
further scale m = 0 by pi and carry (-1)^m for m != 0. `harmonic_factors` holds those per-column factors, so that
the stored SIREN weights see the encoding they were trained with. Input (lon, lat) degrees, as SatCLIP's.
"""
import math

import torch
from torch import nn

from . import sphere_encodings as se
from .encoders import SirenNet

CALCULATIONS = ("analytic", "closed-form")
PREFIXES = ("model.location.nnet.", "model.nnet.", "location.nnet.", "nnet.")


def harmonic_factors(degrees, calculation):
    """(L^2,) float32 factor of each column (l = 0..L-1, m = -l..l) turning this project's real spherical harmonics
    into SatCLIP's for `calculation` 'analytic' or 'closed-form' (module doc)."""
    factors = []
    for l in range(degrees):
        for m in range(-l, l + 1):
            factor = (-1.0) ** l
            if calculation == "analytic":
                factor *= math.pi if m == 0 else (-1.0) ** abs(m)
            factors.append(factor)
    return torch.tensor(factors, dtype=torch.float32)


class SatCLIPLocationEncoder(nn.Module):
    """(N, 2) float32 (lon, lat) degrees → (N, embed_dim) SatCLIP embedding: SIREN(factors · Y(lon, lat))."""

    def __init__(self, degrees, calculation, embed_dim, hidden_dim, num_hidden_layer):
        super().__init__()
        self.degrees = degrees
        self.register_buffer("factors", harmonic_factors(degrees, calculation), persistent=False)
        self.nnet = SirenNet(degrees ** 2, embed_dim, num_hidden_layer, hidden_dim, dropout=0.0)

    def forward(self, coords):
        return self.nnet(se.spherical_harmonics(coords, self.degrees) * self.factors)


def is_satclip_checkpoint(ckpt):
    """True for a dict in the format of a SatCLIP Lightning checkpoint."""
    return isinstance(ckpt, dict) and isinstance(ckpt.get("hyper_parameters"), dict) and "state_dict" in ckpt


def _network_state(path, state_dict):
    for prefix in PREFIXES:
        found = {key[len(prefix):]: value.float() for key, value in state_dict.items() if key.startswith(prefix)}
        if found:
            return found
    raise ValueError(f"{path}: its state_dict has no SIREN weights (keys starting with {PREFIXES[0]!r})")


def satclip_from_checkpoint(ckpt, path, device="cpu"):
    """The encoder of a loaded SatCLIP checkpoint dict (`path` names it in errors), in eval mode on `device`.
    ValueError for other encodings or networks than spherical harmonics + SIREN, or weights that do not fit."""
    hp = ckpt["hyper_parameters"]
    wanted = {"le_type": "sphericalharmonics", "pe_type": "siren"}
    for key, value in wanted.items():
        if hp.get(key) != value:
            raise ValueError(f"{path}: hyper_parameters {key} = {hp.get(key)!r}; only SatCLIP's {value} encoders "
                             f"load here (le_type sphericalharmonics, pe_type siren)")
    calculation = hp.get("harmonics_calculation", "analytic")
    if calculation not in CALCULATIONS:
        raise ValueError(f"{path}: harmonics_calculation {calculation!r} is not supported; use a checkpoint made "
                         f"with {' or '.join(CALCULATIONS)}")
    try:
        model = SatCLIPLocationEncoder(int(hp["legendre_polys"]), calculation, int(hp["embed_dim"]),
                                       int(hp["capacity"]), int(hp["num_hidden_layers"]))
    except KeyError as err:
        raise ValueError(f"{path}: its hyper_parameters lack {err}") from None
    try:
        model.nnet.load_state_dict(_network_state(path, ckpt["state_dict"]), strict=True)
    except RuntimeError as err:
        raise ValueError(f"{path}: the SIREN weights do not fit its hyper_parameters: "
                         f"{str(err).splitlines()[0]}") from None
    return model.to(device).eval()


def load_satclip(path, device="cpu"):
    """The SatCLIP location encoder of the checkpoint file at `path` (module doc), in eval mode on `device`."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as err:  # not a torch file, truncated, or holding objects other than plain values
        raise ValueError(f"{path} is not a readable SatCLIP checkpoint: {str(err).splitlines()[0]}") from None
    if not is_satclip_checkpoint(ckpt):
        raise ValueError(f"{path} is not a SatCLIP checkpoint (no hyper_parameters and state_dict)")
    return satclip_from_checkpoint(ckpt, path, device)
