"""A location encoder as a `.safetensors` file: its weights, and its flags and class names as JSON, no pickle.

The tensors are the state_dict of the location model (the class-prior network, without the image head of
pre-training; `rbf_anchors` (K, 2) (lon, lat) degrees added for rbf models); the file's metadata holds `format`
(FORMAT), `params` (JSON of the run's flags, `unsuper_loss` set to none so that they build that model) and
`class_names` (JSON list of str, or null). `models.load_location_encoder` reads these files.
"""
import json

from safetensors import SafetensorError
from safetensors.torch import safe_open
from safetensors.torch import save as to_bytes

from .checkpoints import plain_value
from .paths import atomic_write

FORMAT = "csp-location-encoder/1"
SUFFIX = ".safetensors"
ANCHORS = "rbf_anchors"


def location_model(model):
    """The class-prior network inside `model` (the inner model of a CSP pre-training wrapper)."""
    return getattr(model, "loc_enc", model)


def save(path, model, params, class_names=None):
    """Write the location model of `model` with `params` and `class_names` to `path` (atomically)."""
    inner = location_model(model)
    tensors = {name: value.detach().cpu().contiguous() for name, value in inner.state_dict().items()}
    anchors = getattr(getattr(inner, "spa_enc", None), "anchors", None)
    if anchors is not None:
        tensors[ANCHORS] = anchors.detach().cpu().contiguous()
    params = {**plain_value(params), "unsuper_loss": "none"}
    metadata = {"format": FORMAT, "params": json.dumps(params),
                "class_names": json.dumps(None if class_names is None else [str(name) for name in class_names])}
    data = to_bytes(tensors, metadata)
    atomic_write(path, lambda handle: handle.write(data))


def load(path, device="cpu"):
    """{'params', 'state_dict', 'class_names', 'anchors' (tensor or None)} of a file written by `save`; ValueError
    naming the file when it is not one."""
    try:
        with safe_open(str(path), framework="pt", device=str(device)) as handle:
            metadata = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    except (SafetensorError, OSError, ValueError) as err:
        raise ValueError(f"{path} is not a readable .safetensors file: {str(err).splitlines()[0]}") from None
    if metadata.get("format") != FORMAT:
        raise ValueError(f"{path}: a .safetensors file without the metadata of a CSP location encoder (format "
                         f"{metadata.get('format')!r}, not {FORMAT!r}); write it with export.py --to safetensors")
    try:
        params, class_names = json.loads(metadata["params"]), json.loads(metadata["class_names"])
    except (KeyError, ValueError) as err:
        raise ValueError(f"{path}: its metadata 'params' / 'class_names' are not JSON ({err})") from None
    anchors = tensors.pop(ANCHORS, None)
    return {"params": params, "state_dict": tensors, "class_names": class_names, "anchors": anchors}


def is_safetensors(path):
    return str(path).lower().endswith(SUFFIX)
