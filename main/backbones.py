"""Image models for `extract_features.py`: a torchvision.models classifier with a local state_dict
(`--weights`; nothing is downloaded), or EfficientNet-Lite0. The feature is the input of the last linear layer
(squeezenet: the pooled input of its last convolution); images are prepared with the transform of the weights the
file is (by SHA-256 prefix), else of the default weights.
"""
import hashlib
import logging
from collections import OrderedDict
from pathlib import Path

import torch
import torchvision
from torch import nn
from torchvision.transforms import v2

from . import efficientnet_lite

logger = logging.getLogger(__name__)

LITE0 = "efficientnet_lite0"
# EfficientNet-Lite0 (TensorFlow weights) scales pixels as (x − 127) / 128: the same as mean / std on [0, 1].
LITE0_PRESET = {"resize_size": 256, "crop_size": 224,
                "mean": [efficientnet_lite.PIXEL_MEAN / 255] * 3, "std": [efficientnet_lite.PIXEL_STD / 255] * 3}
# Settings that torchvision sets when it loads its own weights into these models: their weights expect the input
# re-scaling (transform_input); the auxiliary heads are built when the state_dict holds them.
AUX_HEADS = {"inception_v3": "AuxLogits.", "googlenet": "aux1."}


def transform(backbone, weights_digest=None, image_size=None):
    """(transform of a (3, H, W) uint8 tensor to the model's float input, crop size, resize size); with
    `image_size` S: shorter side to S, centre crop S."""
    if backbone == LITE0:
        settings = dict(LITE0_PRESET)
        if image_size is not None:
            settings["resize_size"] = settings["crop_size"] = image_size
        steps = v2.Compose([v2.Resize(settings["resize_size"], antialias=True), v2.CenterCrop(settings["crop_size"]),
                            v2.ToDtype(torch.float32, scale=True), v2.Normalize(settings["mean"], settings["std"])])
        return steps, settings["crop_size"], settings["resize_size"]
    _check_name(backbone)
    entry = weights_entry(backbone, weights_digest)
    sizes = {} if image_size is None else {"crop_size": image_size, "resize_size": image_size}
    steps = entry.transforms(**sizes)
    return steps, steps.crop_size[0], steps.resize_size[0]


def weights_entry(backbone, digest=None):
    """The torchvision weights entry whose URL holds `digest`'s prefix, else DEFAULT."""
    entries = torchvision.models.get_model_weights(backbone)
    if digest is not None:
        for entry in entries:
            prefix = Path(entry.url).stem.rpartition("-")[2]
            if len(prefix) >= 6 and digest.startswith(prefix):
                return entry
    return entries.DEFAULT


def file_digest(path):
    """The SHA-256 of the --weights file `path`, hex."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"--weights {path} does not exist")
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def load(backbone, weights=None):
    """The feature extractor (eval mode, CPU); ValueError (one line) for an unknown name, a file that is no
    state_dict, or one of another model."""
    if backbone == LITE0:
        if weights is not None:
            raise ValueError("--weights: efficientnet_lite0 uses the weights shipped with its package")
        model = efficientnet_lite.load_pretrained()
        model._fc = nn.Identity()
        return model
    _check_name(backbone)
    if weights is None:
        raise ValueError(f"--backbone {backbone} needs --weights PATH, a local state_dict (weights are never "
                         f"downloaded); e.g. save torchvision.models.get_model('{backbone}', weights='DEFAULT')"
                         f".state_dict() on a machine with network")
    state = read_state_dict(weights)
    return from_state_dict(backbone, state, f"--weights {weights}")


def _check_name(backbone):
    if backbone not in torchvision.models.list_models(module=torchvision.models):
        raise ValueError(f"--backbone {backbone!r} is not a torchvision classification model (e.g. resnet50, "
                         f"inception_v3, efficientnet_b0, convnext_tiny) nor {LITE0}")


def from_state_dict(backbone, state, source="the state_dict"):
    """torchvision's `backbone` holding `state` (any class count), without that layer, in eval mode."""
    kwargs = {}
    if backbone in AUX_HEADS:
        kwargs = {"transform_input": True, "init_weights": False,
                  "aux_logits": any(key.startswith(AUX_HEADS[backbone]) for key in state)}
    try:  # built without memory or initialisation when the architecture allows, then given the state's tensors
        with torch.device("meta"):
            model = torchvision.models.get_model(backbone, weights=None, **kwargs)
    except (NotImplementedError, RuntimeError):
        model = torchvision.models.get_model(backbone, weights=None, **kwargs)
    head = _remove_head(model)
    kept = OrderedDict((key, value) for key, value in state.items() if not key.startswith(head + "."))
    kept._metadata = getattr(state, "_metadata", None)  # the version numbers some modules read when loading
    try:
        model.load_state_dict(kept, assign=True)
    except (RuntimeError, ValueError):
        raise ValueError(f"{source} does not fit torchvision's {backbone}: {_mismatch(model, kept)}; was it saved "
                         f"from another model? give --backbone the model it was saved from") from None
    return model.float().eval()


def _remove_head(model):
    """Replace the classifier's last layer by the identity (squeezenet: by pooling); its name."""
    if isinstance(model, torchvision.models.SqueezeNet):
        model.classifier[1] = nn.AdaptiveAvgPool2d(1)
        model.classifier[2] = model.classifier[3] = nn.Identity()
        return "classifier.1"
    name = [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and not n.startswith(("aux", "Aux"))][-1]
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, nn.Identity())
    return name


def _mismatch(model, state):
    wanted = model.state_dict()
    missing = [key for key in wanted if key not in state]
    unexpected = [key for key in state if key not in wanted]
    shapes = [key for key in wanted if key in state and hasattr(state[key], "shape")
              and tuple(state[key].shape) != tuple(wanted[key].shape)]
    parts = [f"{len(keys)} {what} (e.g. {keys[0]})" for keys, what in
             ((missing, "missing keys"), (unexpected, "unexpected keys"), (shapes, "tensors of other shapes")) if keys]
    return ", ".join(parts) or "values that are not tensors"


def read_state_dict(path):
    """The state_dict in a torch.save file (bare, or under 'state_dict' / 'model'), weights only."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"--weights {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except OSError:
        raise
    except Exception as err:  # noqa: BLE001 (torch.load fails on junk with many exception types)
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if "Weights only load failed" in first:
            raise ValueError(f"--weights {path} holds a pickled model, not a state_dict: load it where it was made "
                             f"and save torch.save(model.state_dict(), PATH)") from None
        raise ValueError(f"--weights {path} is not a torch.save file of a state_dict ({first[:120]})") from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise ValueError(f"--weights {path} does not hold a state_dict (a dict of tensors)")
    return state
