"""Location-encoder models: a spatial encoder with class and user heads, geo_net's FCNet, the pre-training
wrapper, `build_model` and `load_location_encoder`.

`model(coords, class_of_interest=None, return_feats=False)`: coords (B, 2) float32 (lon, lat) degrees [+ a date in
[0, 1] for geo_net]; returns the embedding (B, D) with `return_feats`, else σ(e·W_classᵀ) (B, C), or (B,) for one
class.
"""
import logging
from collections import Counter
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from . import checkpoints
from . import peer_checkpoints
from . import position_encodings as pe
from . import safetensors_file
from .distributed import resolve_device
from .encoders import Dropout, build_spatial_encoder

logger = logging.getLogger(__name__)

# Input width of FCNet per `--loc_encode` / `--date_encode` (0 when --use_date_feats F).
LOC_ENCODE_DIMS = {"encode_cos_sin": 4, "encode_3D": 3, "encode_none": 2}
DATE_ENCODE_DIMS = {"encode_cos_sin": 2, "encode_none": 1}
MAX_ROWS_SHOWN = 5


def input_width(params):
    """Width of a model's input (`params['num_feats']`)."""
    if params["spa_enc_type"] != "geo_net":
        return 2
    return _fcnet_width(params["loc_encode"], params["use_date_feats"], params["date_encode"])


def _fcnet_width(loc_encode, use_date_feats, date_encode):
    return LOC_ENCODE_DIMS[loc_encode] + (DATE_ENCODE_DIMS[date_encode] if use_date_feats else 0)


def _check_width(coords, width, what):
    if coords.dim() != 2 or coords.shape[1] != width:
        raise ValueError(f"{what} expects a (B, {width}) tensor, got shape {tuple(coords.shape)}")


class ClassPriorHead(nn.Module):
    """The forward of the models around `embedding(coords)`."""

    def forward(self, coords, class_of_interest=None, return_feats=False):
        emb = self.embedding(coords)
        if return_feats:
            return emb
        if class_of_interest is None:
            return torch.sigmoid(self.class_emb(emb))
        return torch.sigmoid(self.eval_single_class(emb, class_of_interest))

    def eval_single_class(self, emb, class_of_interest):
        return torch.matmul(emb, self.class_emb.weight[class_of_interest, :])

    def add_class_and_user_embeddings(self, num_classes, num_filts, num_users):
        self.inc_bias = False
        self.num_filts = num_filts
        self.num_classes = num_classes
        self.num_users = num_users
        self.class_emb = nn.Linear(num_filts, num_classes, bias=False)
        self.user_emb = nn.Linear(num_filts, num_users, bias=False)


class LocationEncoder(ClassPriorHead):
    """A spatial encoder `spa_enc` of encoders.py with the class and user heads."""

    def __init__(self, spa_enc, num_classes, num_filts, num_users=1):
        super().__init__()
        self.spa_enc = spa_enc
        self.add_class_and_user_embeddings(num_classes, num_filts, num_users)

    def embedding(self, coords):
        _check_width(coords, 2, "LocationEncoder: (lon, lat) in degrees")
        return self.spa_enc(coords)


class ResLayer(nn.Module):

    def __init__(self, linear_size):
        super().__init__()
        self.l_size = linear_size
        self.nonlin1 = nn.ReLU(inplace=True)
        self.nonlin2 = nn.ReLU(inplace=True)
        self.dropout1 = Dropout()
        self.w1 = nn.Linear(linear_size, linear_size)
        self.w2 = nn.Linear(linear_size, linear_size)

    def forward(self, x):
        y = self.nonlin2(self.w2(self.dropout1(self.nonlin1(self.w1(x)))))
        return x + y


class FCNet(ClassPriorHead):
    """`geo_net` (Mac Aodha et al. 2019): features -> Linear -> ReLU -> 4 ResLayers. Of x = lon/180,
    y = lat/90: encode_cos_sin [sin πx, sin πy, cos πx, cos πy], encode_3D or encode_none; a date d adds
    [sin π(2d−1), cos π(2d−1)] or 2d − 1."""

    def __init__(self, num_classes, num_filts, num_users=1, loc_encode="encode_cos_sin", use_date_feats=False,
                 date_encode="encode_cos_sin"):
        super().__init__()
        if loc_encode not in LOC_ENCODE_DIMS:
            raise ValueError(f"--loc_encode must be one of {', '.join(LOC_ENCODE_DIMS)}, got {loc_encode!r}")
        if use_date_feats and date_encode not in DATE_ENCODE_DIMS:
            raise ValueError(f"--date_encode must be one of {', '.join(DATE_ENCODE_DIMS)}, got {date_encode!r}")
        self.loc_encode = loc_encode
        self.use_date_feats = use_date_feats
        self.date_encode = date_encode
        num_inputs = _fcnet_width(loc_encode, use_date_feats, date_encode)
        self.add_class_and_user_embeddings(num_classes, num_filts, num_users)
        self.feats = nn.Sequential(nn.Linear(num_inputs, num_filts), nn.ReLU(inplace=True),
                                   *(ResLayer(num_filts) for _ in range(4)))

    @classmethod
    def from_params(cls, params, num_classes, num_users):
        return cls(num_classes, params["num_filts"], num_users, params["loc_encode"], params["use_date_feats"],
                   params["date_encode"])

    def input_features(self, coords):
        _check_width(coords, 3 if self.use_date_feats else 2,
                     "geo_net: (lon, lat" + (", date)" if self.use_date_feats else ")") + " in degrees")
        lonlat = coords[:, :2]
        if self.loc_encode == "encode_cos_sin":
            feats = pe.wrap(lonlat)
        elif self.loc_encode == "encode_3D":
            feats = pe.wrap_3d(lonlat)
        else:
            feats = pe.global_normalise(lonlat)
        if not self.use_date_feats:
            return feats
        date = coords[:, 2:3] * 2.0 - 1.0
        if self.date_encode == "encode_cos_sin":
            date = torch.cat((torch.sin(torch.pi * date), torch.cos(torch.pi * date)), dim=1)
        return torch.cat((feats, date), dim=1)

    def embedding(self, coords):
        return self.feats(self.input_features(coords))


class LocationImageEncoder(nn.Module):
    """The pre-training model: `loc_enc` with `img_dec` Linear(cnn_feat_dim -> D) or `loc_dec`
    Linear(D -> cnn_feat_dim) (l2regress); `loc_enc`'s modules registered twice (the original's state_dict keys)."""

    def __init__(self, loc_enc, unsuper_loss, cnn_feat_dim=2048):
        super().__init__()
        self.loc_enc = loc_enc
        self.spa_enc = loc_enc if isinstance(loc_enc, FCNet) else loc_enc.spa_enc
        self.inc_bias = loc_enc.inc_bias
        self.class_emb = loc_enc.class_emb
        self.user_emb = loc_enc.user_emb
        self.cnn_feat_dim = cnn_feat_dim
        self.loc_emb_dim = loc_enc.num_filts
        if unsuper_loss == "l2regress":
            self.loc_dec = nn.Linear(self.loc_emb_dim, cnn_feat_dim, bias=True)
        else:
            self.img_dec = nn.Linear(cnn_feat_dim, self.loc_emb_dim, bias=True)

    def forward(self, coords, class_of_interest=None, return_feats=False):
        return self.loc_enc(coords, class_of_interest, return_feats)

    def eval_single_class(self, emb, class_of_interest):
        return self.loc_enc.eval_single_class(emb, class_of_interest)


def build_model(params, num_classes, num_users, cnn_feat_dim=None, anchors=None):
    """The model of `params` on the CPU, initialised in the original's order: `LocationImageEncoder` with a
    pre-training loss (needs `cnn_feat_dim`), else `LocationEncoder` or `FCNet`; `anchors`: rbf's (K, 2) (lon, lat)."""
    if params["spa_enc_type"] == "geo_net":
        if params.get("spa_enc_net", "ffn") != "ffn":
            raise ValueError(f"--spa_enc_net {params['spa_enc_net']}: geo_net has its own network (FCNet); use "
                             f"--spa_enc_type geo_net_fft (the same wrap encoding) with --spa_enc_net siren")
        loc_enc = FCNet.from_params(params, num_classes, num_users)
    else:
        loc_enc = LocationEncoder(build_spatial_encoder(params, anchors), num_classes, params["num_filts"], num_users)
    unsuper_loss = params["unsuper_loss"]
    if unsuper_loss == "none":
        return loc_enc
    cnn_feat_dim = cnn_feat_dim if cnn_feat_dim is not None else params.get("cnn_feat_dim")
    if cnn_feat_dim is None:
        raise ValueError(f"--unsuper_loss {unsuper_loss} needs the image-feature size: pass cnn_feat_dim")
    return LocationImageEncoder(loc_enc, unsuper_loss, int(cnn_feat_dim))


MAX_ENCODER_PARAMETERS = 2 ** 30   # 4 GiB of float32 weights, before the optimiser's two copies


def check_model_flags(params):
    """ValueError for flags that build no model, or one over MAX_ENCODER_PARAMETERS weights
    (built on the meta device)."""
    anchors = np.zeros((params["num_rbf_anchor_pts"], 2), np.float32) if params["spa_enc_type"] == "rbf" else None
    try:
        with torch.device("meta"):
            model = build_model(params, 1, 1, 1, anchors)
    except (RuntimeError, OverflowError, TypeError) as err:
        raise ValueError(_too_large(params, f"cannot be built ({str(err).splitlines()[0]})")) from None
    size = sum(weights.numel() for weights in model.parameters())
    if size > MAX_ENCODER_PARAMETERS:
        raise ValueError(_too_large(params, f"has {size:,} weights (at most {MAX_ENCODER_PARAMETERS:,})"))


def _too_large(params, what):
    return (f"--spa_enc_type {params['spa_enc_type']} with --frequency_num {params['frequency_num']}, "
            f"--legendre_poly_num {params['legendre_poly_num']}, --hidden_dim {params['hidden_dim']}, "
            f"--num_hidden_layer {params['num_hidden_layer']} and --num_filts {params['num_filts']}: the location "
            f"encoder {what}; lower those flags (the paper's: --frequency_num 32, --hidden_dim 512, --num_filts 256)")


def _describe_rows(values, bad):
    rows = torch.nonzero(bad).flatten().tolist()
    shown = ", ".join(f"{row} {tuple(values[row].tolist())}" for row in rows[:MAX_ROWS_SHOWN])
    more = f" (first {MAX_ROWS_SHOWN} shown)" if len(rows) > MAX_ROWS_SHOWN else ""
    return f"{len(rows)} of {len(values)} rows: {shown}{more}"


def _as_float64(values, shape_ok, expected):
    try:
        array = values if torch.is_tensor(values) else np.asarray(values)
    except (TypeError, ValueError) as err:
        raise ValueError(f"expected {expected}: {err}") from None
    real = (not (array.is_complex() or array.dtype == torch.bool) if torch.is_tensor(array)
            else array.dtype.kind in "iuf")
    if not real:
        raise ValueError(f"expected {expected} as real numbers (float or int), got {array.dtype} values; convert "
                         f"them, e.g. np.asarray(values, dtype=float)")
    tensor = torch.as_tensor(array)
    if not shape_ok(tuple(tensor.shape)):
        raise ValueError(f"expected {expected}, got shape {tuple(tensor.shape)}")
    return tensor.double()


def check_lonlat(coords):
    """(N, 2) (lon, lat) degrees (array, tensor or list) as float32; ValueError naming the first rows
    that are not finite or out of range, or for another shape."""
    values = _as_float64(coords, lambda shape: len(shape) == 2 and shape[1] == 2,
                         "an (N, 2) array of (lon, lat) in degrees")
    lon, lat = values[:, 0], values[:, 1]
    bad = torch.isnan(values).any(dim=1) | (lon.abs() > 180.0) | (lat.abs() > 90.0)
    if bad.any():
        raise ValueError("(lon, lat) must be finite degrees within [-180, 180] x [-90, 90]; invalid "
                         + _describe_rows(values, bad))
    return values.float()


def check_dates(dates, count):
    """(N,) dates, fractions of the year in [0, 1], as a float32 tensor; ValueError naming the first bad rows."""
    values = _as_float64(dates, lambda shape: shape == (count,), f"({count},) dates (fractions of the year)")
    bad = torch.isnan(values) | (values < 0.0) | (values > 1.0)
    if bad.any():
        raise ValueError("dates must be fractions of the year in [0, 1]; invalid "
                         + _describe_rows(values[:, None], bad))
    return values.float()


@contextmanager
def eval_mode(model):
    """`model` in eval mode without gradients; its mode is restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        model.train(was_training)


def run_batched(model, coords, batch_size, **kwargs):
    """`model(batch, **kwargs)` over `coords` in batches (eval mode, no gradients), concatenated."""
    with eval_mode(model):
        return torch.cat([model(coords[start:start + batch_size], **kwargs)
                          for start in range(0, max(len(coords), 1), batch_size)])


class PretrainedLocationEncoder:
    """A trained location encoder for inference: `embed` and `class_probabilities` take
    (N, 2) (lon, lat) degrees [and `dates` (N,) in [0, 1] for geo_net with dates] and return float32 tensors on
    `device`; `class_names` or None."""

    def __init__(self, model, params, device, batch_size=65536, class_names=None, source="this encoder"):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer of at least 1, got {batch_size!r}")
        self.model = model.to(device).eval()
        self.params = params
        self.device = device
        self.batch_size = batch_size
        self.class_names = class_names
        self.source = source

    def _run(self, lonlat, dates, return_feats):
        coords = check_lonlat(lonlat)
        if self.params["spa_enc_type"] == "geo_net" and self.params["use_date_feats"]:
            if dates is None:
                raise ValueError("this geo_net model was trained with --use_date_feats T: pass dates=")
            coords = torch.cat((coords, check_dates(dates, len(coords))[:, None]), dim=1)
        return run_batched(self.model, coords.to(self.device), self.batch_size, return_feats=return_feats)

    def embed(self, lonlat, dates=None):
        """(N, D) embeddings, not L2-normalised."""
        return self._run(lonlat, dates, return_feats=True)

    def class_probabilities(self, lonlat, dates=None):
        """(N, C) σ(e(x)·W_c), independent per class (rows do not sum to 1);
        ValueError for a pre-training checkpoint."""
        checkpoints.check_class_head(self.params, self.source)
        return self._run(lonlat, dates, return_feats=False)


def load_location_encoder(path, device="cpu", anchors=None, batch_size=65536):
    """The `PretrainedLocationEncoder` of a checkpoint (ours, the original's, TorchSpatial's
    or an export.py `.safetensors`) on `device` ("cpu", "cuda:0", "auto"); rbf models need `anchors` (K, 2) unless the
    file holds them. FileNotFoundError or ValueError naming the file."""
    device = resolve_device(device) if isinstance(device, str) else torch.device(device)
    found = checkpoints.find_checkpoint(path)
    if found is None:
        raise FileNotFoundError(f"no checkpoint at {path}")
    if safetensors_file.is_safetensors(found):
        ckpt = safetensors_file.load(found, device)
        anchors = ckpt["anchors"] if anchors is None else anchors
    else:
        ckpt = checkpoints.load_checkpoint(found, device)
    repeated = sorted(name for name, count in Counter(ckpt.get(checkpoints.CLASS_NAMES_KEY) or []).items()
                      if count > 1)
    if repeated:
        raise ValueError(f"{found}: its class names repeat {', '.join(map(repr, repeated[:5]))}, so a class cannot be "
                         f"found by name; write it again from a label set that names each class once")
    params, state = peer_checkpoints.from_torchspatial(dict(ckpt["params"]), ckpt["state_dict"])
    params["device"] = str(device)
    try:
        return _pretrained_encoder(found, params, state, device, anchors, batch_size,
                                   ckpt.get(checkpoints.CLASS_NAMES_KEY))
    except KeyError as err:
        raise ValueError(f"{found} is malformed: its params lack {err}, which building its model needs") from None
    except TypeError as err:
        raise ValueError(f"{found} is malformed: its params do not build a model ({err})") from None
    except ValueError as err:
        if str(found) in str(err):
            raise
        raise ValueError(f"{found}: {err}") from None


def non_finite_weights(model):
    """Names of the state_dict entries of `model` holding a NaN or an infinite value."""
    return [name for name, value in model.state_dict().items()
            if value.is_floating_point() and not torch.isfinite(value).all()]


def _pretrained_encoder(found, params, state, device, anchors, batch_size, class_names):
    if params["spa_enc_type"] == "rbf" and anchors is None:
        raise ValueError(f"{found}: an rbf model needs anchors=, the (K, 2) (lon, lat) training locations at "
                         f"params['rbf_anchor_pt_ids'] (the first ids: {params.get('rbf_anchor_pt_ids', [])[:5]})")
    if anchors is not None:
        try:
            anchors = check_lonlat(anchors)
        except ValueError as err:
            raise ValueError(f"{found}: anchors=: {err}; pass the training locations at "
                             f"params['rbf_anchor_pt_ids']") from None
    num_classes = params.get("num_classes") or checkpoints.state_rows(state, "class_emb.weight") or 1
    num_users = params.get("num_users") or checkpoints.state_rows(state, "user_emb.weight") or 1
    cnn_feat_dim = (params.get("cnn_feat_dim") or checkpoints.state_rows(state, "img_dec.weight", 1)
                    or checkpoints.state_rows(state, "loc_dec.weight"))
    check_model_flags(params)
    model = build_model(params, num_classes, num_users, cnn_feat_dim, anchors)
    checkpoints.load_state(model, state, source=found)
    bad = non_finite_weights(model)
    if bad:
        raise ValueError(f"{found}: its weights hold NaN or infinite values ({', '.join(bad[:3])}), so every "
                         f"prediction would be NaN; the run that wrote it diverged: use another checkpoint")
    logger.info("Loaded %s (%s, %d classes) on %s", found, params["spa_enc_type"], num_classes, device)
    return PretrainedLocationEncoder(model, params, device, batch_size, class_names, found)
