"""Location-encoder models of CSP: the class-prior network around a spatial encoder, the CSP pre-training wrapper,
the `geo_net` FCNet, `build_model` and `load_location_encoder`.

Every model is called as `model(coords, class_of_interest=None, return_feats=False)` with `coords` a float32
tensor (B, 2) of (lon, lat) in degrees on the model's device ((B, 3) for `geo_net` with `--use_date_feats T`, the
third column the date as a fraction of the year in [0, 1]). It returns the (B, D) location embedding e when
`return_feats`, else the class prior sigmoid(e W_class^T) (B, C), or (B,) for one `class_of_interest`.
Module trees and parameter names are those of the original code, so state_dicts load either way.
"""
import logging
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from . import checkpoints
from . import peer_checkpoints
from . import position_encodings as pe
from . import safetensors_file
from .arguments import resolve_device
from .encoders import Dropout, build_spatial_encoder

logger = logging.getLogger(__name__)

# Input width of FCNet per `--loc_encode` / `--date_encode` (0 when --use_date_feats F).
LOC_ENCODE_DIMS = {"encode_cos_sin": 4, "encode_3D": 3, "encode_none": 2}
DATE_ENCODE_DIMS = {"encode_cos_sin": 2, "encode_none": 1}
MAX_ROWS_SHOWN = 5


def _check_width(coords, width, what):
    if coords.dim() != 2 or coords.shape[1] != width:
        raise ValueError(f"{what} expects a (B, {width}) tensor, got shape {tuple(coords.shape)}")


class ClassPriorHead(nn.Module):
    """Shared forward of the models: embedding -> sigmoid(e W_class^T); subclasses define `embedding(coords)`."""

    def forward(self, coords, class_of_interest=None, return_feats=False):
        emb = self.embedding(coords)
        if return_feats:
            return emb
        if class_of_interest is None:
            return torch.sigmoid(self.class_emb(emb))
        return torch.sigmoid(self.eval_single_class(emb, class_of_interest))

    def eval_single_class(self, emb, class_of_interest):
        """(B,) logits of one class: e . W_class[c]."""
        return torch.matmul(emb, self.class_emb.weight[class_of_interest, :])

    def add_class_and_user_embeddings(self, num_classes, num_filts, num_users):
        """Create `class_emb` (D -> C) and then `user_emb` (D -> U), both linear without bias."""
        self.inc_bias = False
        self.num_filts = num_filts
        self.num_classes = num_classes
        self.num_users = num_users
        self.class_emb = nn.Linear(num_filts, num_classes, bias=False)
        self.user_emb = nn.Linear(num_filts, num_users, bias=False)


class LocationEncoder(ClassPriorHead):
    """`spa_enc` (a spatial encoder of encoders.py) with the class and user embeddings `class_emb`, `user_emb`."""

    def __init__(self, spa_enc, num_classes, num_filts, num_users=1):
        super().__init__()
        self.spa_enc = spa_enc
        self.add_class_and_user_embeddings(num_classes, num_filts, num_users)

    def embedding(self, coords):
        _check_width(coords, 2, "LocationEncoder: (lon, lat) in degrees")
        return self.spa_enc(coords)


class ResLayer(nn.Module):
    """out = x + ReLU(w2(Dropout(0.5)(ReLU(w1 x))))."""

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
    """`geo_net` (Mac Aodha et al. 2019, "wrap"): input features -> Linear -> ReLU -> 4 ResLayers.

    The input features are computed here from (lon, lat) degrees: `--loc_encode` encode_cos_sin (wrap,
    [sin pi x, sin pi y, cos pi x, cos pi y] of x = lon/180, y = lat/90), encode_3D (point on the sphere) or
    encode_none (x, y); with `--use_date_feats T` the date d in [0, 1] (third input column) adds
    [sin pi(2d-1), cos pi(2d-1)] (`--date_encode encode_cos_sin`) or 2d-1 (encode_none).
    """

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
        num_inputs = LOC_ENCODE_DIMS[loc_encode] + (DATE_ENCODE_DIMS[date_encode] if use_date_feats else 0)
        self.add_class_and_user_embeddings(num_classes, num_filts, num_users)
        self.feats = nn.Sequential(nn.Linear(num_inputs, num_filts), nn.ReLU(inplace=True),
                                   *(ResLayer(num_filts) for _ in range(4)))

    @classmethod
    def from_params(cls, params, num_classes, num_users):
        return cls(num_classes, params["num_filts"], num_users, params["loc_encode"], params["use_date_feats"],
                   params["date_encode"])

    def input_features(self, coords):
        """(B, num_inputs) network input from (lon, lat[, date]) columns."""
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
    """CSP wrapper: the location model `loc_enc` plus the image-side head used by the pre-training losses.

    `spa_enc`, `class_emb` and `user_emb` are the inner model's modules registered a second time (as in the
    original, so its state_dict lists them twice); for geo_net `spa_enc` is the FCNet itself. `img_dec`
    = Linear(cnn_feat_dim -> D) for the contrastive losses, `loc_dec` = Linear(D -> cnn_feat_dim) for l2regress.
    """

    def __init__(self, loc_enc, unsuper_loss, cnn_feat_dim=2048):
        super().__init__()
        if unsuper_loss not in checkpoints.PRETRAINING_LOSSES:
            raise ValueError(f"--unsuper_loss must be one of {', '.join(checkpoints.PRETRAINING_LOSSES)} for the "
                             f"CSP wrapper, got {unsuper_loss!r}")
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
    """The model of a run's flags, on the CPU, initialised in the original's order (seed torch first).

    `LocationImageEncoder` when `params['unsuper_loss'] != 'none'` (needs `cnn_feat_dim`, or
    `params['cnn_feat_dim']`), else `LocationEncoder`, or `FCNet` for `--spa_enc_type geo_net`.
    `anchors`: (K, 2) (lon, lat) degrees of the rbf anchor points (rbf only).
    """
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
    """ValueError for flags that no location encoder can be built from (`--spa_enc_net`, `--legendre_poly_num`,
    tile cells, theorydiag's widths, ...) or that make one of more than `MAX_ENCODER_PARAMETERS` weights (a huge
    `--frequency_num`, `--legendre_poly_num`, `--hidden_dim`, `--num_filts`), checked without allocating: the model
    is built on torch's meta device (one class and one user; rbf anchors at (0, 0)). Baselines have no model."""
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
    """`values` (array, tensor or nested list) as a float64 tensor; ValueError saying `expected` if not numeric
    or if `shape_ok(shape)` is false."""
    try:
        tensor = values if torch.is_tensor(values) else torch.as_tensor(np.asarray(values))
    except (TypeError, ValueError) as err:
        raise ValueError(f"expected {expected}: {err}") from None
    if not shape_ok(tuple(tensor.shape)):
        raise ValueError(f"expected {expected}, got shape {tuple(tensor.shape)}")
    return tensor.double()


def check_lonlat(coords):
    """Validate (N, 2) (lon, lat) degrees (numpy array, tensor or nested list) and return them as float32 tensor.

    Raises ValueError naming the offending rows (first few, and their count) for NaN or infinite values, lon
    outside [-180, 180] or lat outside [-90, 90], and for any shape other than (N, 2).
    """
    values = _as_float64(coords, lambda shape: len(shape) == 2 and shape[1] == 2,
                         "an (N, 2) array of (lon, lat) in degrees")
    lon, lat = values[:, 0], values[:, 1]
    bad = torch.isnan(values).any(dim=1) | (lon.abs() > 180.0) | (lat.abs() > 90.0)
    if bad.any():
        raise ValueError("(lon, lat) must be finite degrees within [-180, 180] x [-90, 90]; invalid "
                         + _describe_rows(values, bad))
    return values.float()


def check_dates(dates, count):
    """Validate (N,) dates as fractions of the year in [0, 1]; return them as a float32 tensor."""
    values = _as_float64(dates, lambda shape: shape == (count,), f"({count},) dates (fractions of the year)")
    bad = torch.isnan(values) | (values < 0.0) | (values > 1.0)
    if bad.any():
        raise ValueError("dates must be fractions of the year in [0, 1]; invalid "
                         + _describe_rows(values[:, None], bad))
    return values.float()


@contextmanager
def eval_mode(model):
    """Evaluate `model` without dropout and without gradients; its train/eval mode is restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        model.train(was_training)


def run_batched(model, coords, batch_size, **kwargs):
    """`model(batch, **kwargs)` over the rows of `coords` (on the model's device) in batches of `batch_size`, in
    eval mode without gradients; the outputs concatenated. An empty input still makes one (empty) batch, so that
    the result has the right width."""
    with eval_mode(model):
        return torch.cat([model(coords[start:start + batch_size], **kwargs)
                          for start in range(0, max(len(coords), 1), batch_size)])


class PretrainedLocationEncoder:
    """A trained location encoder for inference: `embed` and `class_probabilities` of (lon, lat) degrees.

    Inputs may be numpy arrays, tensors or lists of shape (N, 2); they are checked (`check_lonlat`), run in
    batches of `batch_size` in eval mode without gradients, and the result is a float32 tensor on `device`.
    Models with `--use_date_feats T` (geo_net) also need `dates`, (N,) fractions of the year in [0, 1].
    `class_names`: list of C str (index = class id) from checkpoints this project wrote, else None (the original's
    checkpoints do not store them).
    """

    def __init__(self, model, params, device, batch_size=65536, class_names=None):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer of at least 1, got {batch_size!r}")
        self.model = model.to(device).eval()
        self.params = params
        self.device = device
        self.batch_size = batch_size
        self.class_names = class_names

    def _run(self, lonlat, dates, return_feats):
        coords = check_lonlat(lonlat)
        if self.params["spa_enc_type"] == "geo_net" and self.params["use_date_feats"]:
            if dates is None:
                raise ValueError("this geo_net model was trained with --use_date_feats T: pass dates=")
            coords = torch.cat((coords, check_dates(dates, len(coords))[:, None]), dim=1)
        return run_batched(self.model, coords.to(self.device), self.batch_size, return_feats=return_feats)

    def embed(self, lonlat, dates=None):
        """(N, 2) (lon, lat) degrees -> (N, D) float32 location embeddings e(x), D = `--num_filts` (256 in the
        paper): the encoder's output as the class head takes it, NOT L2-normalised (the pre-training losses
        normalise it; use `torch.nn.functional.normalize(e, dim=1)` for cosine similarities)."""
        return self._run(lonlat, dates, return_feats=True)

    def class_probabilities(self, lonlat, dates=None):
        """(N, 2) (lon, lat) degrees -> (N, C) float32 class prior P(y = c | x) = sigmoid(e(x) . W_c): one
        independent sigmoid per class (the presence-only loss of Mac Aodha et al. 2019 trains each class as present
        or absent), so a row does NOT sum to 1 and is not a distribution over classes; divide by the row sum, or
        multiply with image probabilities and rank (as the evaluation does), where one is needed."""
        return self._run(lonlat, dates, return_feats=False)


def _state_rows(state_dict, suffix, axis):
    """Size along `axis` of the first state_dict entry whose key ends with `suffix`, or None."""
    for key, value in state_dict.items():
        if key == suffix or key.endswith("." + suffix):
            return value.shape[axis]
    return None


def load_location_encoder(path, device="cpu", anchors=None, batch_size=65536):
    """Load a checkpoint in the original CSP format and return a `PretrainedLocationEncoder` on `device`.

    `device` ("cpu", "cuda:0", "auto", or a torch.device) replaces the device stored in the checkpoint's params.
    num_classes, num_users and cnn_feat_dim come from params, or from the state_dict shapes where params lack them.
    rbf models need `anchors`, the (K, 2) training locations at `params['rbf_anchor_pt_ids']`.
    The released fMoW checkpoints, named without the `inception_v3_` tag, are found too (`find_checkpoint`), and
    so are TorchSpatial's checkpoints (`peer_checkpoints`): their encodings are rebuilt as TorchSpatial computed them.
    The result's `class_names` are those the checkpoint stores (files written by this project), else None.
    A `.safetensors` file of `export.py` (`safetensors_file`) loads without unpickling; it holds rbf anchors.
    """
    device = resolve_device(device) if isinstance(device, str) else torch.device(device)
    found = checkpoints.find_checkpoint(path)
    if found is None:
        raise FileNotFoundError(f"no checkpoint at {path}")
    if safetensors_file.is_safetensors(found):
        ckpt = safetensors_file.load(found, device)
        anchors = ckpt["anchors"] if anchors is None else anchors
    else:
        ckpt = checkpoints.load_checkpoint(found, device)
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
    """Names of the floating-point state_dict entries of `model` that hold a NaN or an infinite value."""
    return [name for name, value in model.state_dict().items()
            if value.is_floating_point() and not torch.isfinite(value).all()]


def _pretrained_encoder(found, params, state, device, anchors, batch_size, class_names):
    if params["spa_enc_type"] == "rbf" and anchors is None:
        raise ValueError(f"{found}: an rbf model needs anchors=, the (K, 2) (lon, lat) training locations at "
                         f"params['rbf_anchor_pt_ids'] (the first ids: {params.get('rbf_anchor_pt_ids', [])[:5]})")
    num_classes = params.get("num_classes") or _state_rows(state, "class_emb.weight", 0) or 1
    num_users = params.get("num_users") or _state_rows(state, "user_emb.weight", 0) or 1
    cnn_feat_dim = (params.get("cnn_feat_dim") or _state_rows(state, "img_dec.weight", 1)
                    or _state_rows(state, "loc_dec.weight", 0))
    check_model_flags(params)
    model = build_model(params, num_classes, num_users, cnn_feat_dim, anchors)
    checkpoints.load_state(model, state, source=found)
    bad = non_finite_weights(model)
    if bad:
        raise ValueError(f"{found}: its weights hold NaN or infinite values ({', '.join(bad[:3])}), so every "
                         f"prediction would be NaN; the run that wrote it diverged: use another checkpoint")
    logger.info("Loaded %s (%s, %d classes) on %s", found, params["spa_enc_type"], num_classes, device)
    return PretrainedLocationEncoder(model, params, device, batch_size, class_names)
