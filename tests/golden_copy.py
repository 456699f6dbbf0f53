"""The repository's compact copy of the original code's golden outputs (`tests/golden/`), and its packer.

The golden folder (`../shared/golden/`, 28 MB: checkpoints in the original format, npz arrays, json) is packed
into `tests/golden/` (under 10 MB): every distinct array once, its bytes regrouped by byte position ("shuffle", as
HDF5/blosc do) and the whole stream LZMA-compressed; checkpoints as their dict with each tensor replaced by a
reference; other files verbatim (in `files/`). `unpack` rebuilds the folder (the same file names, the same dict
structure, the same array bytes — each one checked against the SHA-1 of the original's bytes) for the tests to
read. The only content not kept bit for bit is listed in `DROPPED` and in `tests/golden/README.md`.

Re-pack (only when the golden folder itself changes): `python tests/golden_copy.py ../shared/golden tests/golden`.
"""
import hashlib
import json
import lzma
import shutil
import sys
from pathlib import Path

import numpy as np
import torch

MANIFEST = "manifest.json"
ARRAYS = "arrays.xz"
CHECKPOINTS = "checkpoints.pt"
VERBATIM = "files"
REF = "golden-array:"
# (checkpoint file, key path) emptied in the copy (a tensor becomes zeros of its shape and dtype, anything else an
# empty dict): content that changes no value a test checks (see tests/golden/README.md).
DROPPED = (("encoders/gridcell_inat_csp.pth.tar", ("optimizer", "state")),
           ("encoders/gridcell_fmow_csp.pth.tar", ("state_dict", "img_dec.weight")),
           ("encoders/gridcell_l2regress.pth.tar", ("state_dict", "loc_dec.weight")))


def _digest(array):
    """SHA-1 of dtype, shape and bytes: the reference of an array in the copy."""
    head = f"{array.dtype.str}{array.shape}".encode()
    return hashlib.sha1(head + array.tobytes()).hexdigest()


def _shuffled(array):
    """The bytes of `array` grouped by position within an element (all first bytes, then all second bytes ...)."""
    raw = np.require(array, requirements="C").reshape(-1).view(np.uint8).reshape(array.size, array.dtype.itemsize)
    return np.ascontiguousarray(raw.T).tobytes()


def _unshuffled(data, dtype, shape):
    dtype = np.dtype(dtype)
    count = int(np.prod(shape, dtype=np.int64))
    raw = np.frombuffer(data, np.uint8).reshape(dtype.itemsize, count)
    return np.ascontiguousarray(raw.T).view(dtype).reshape(shape)


class _Store:
    """Distinct arrays by reference, in the order first seen."""

    def __init__(self):
        self.arrays = {}

    def add(self, array):
        ref = _digest(array)
        self.arrays.setdefault(ref, np.require(array, requirements="C"))
        return ref

    def swap_tensors(self, value):
        """`value` (a checkpoint's nested dicts/lists) with every tensor replaced by its reference string."""
        if isinstance(value, torch.Tensor):
            return REF + self.add(value.detach().cpu().numpy())
        if isinstance(value, dict):
            return {key: self.swap_tensors(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(self.swap_tensors(item) for item in value)
        return value


def _drop(checkpoint, keys):
    *parents, last = keys
    for key in parents:
        checkpoint = checkpoint[key]
    value = checkpoint[last]
    checkpoint[last] = torch.zeros_like(value) if isinstance(value, torch.Tensor) else {}


def pack(source, target):
    """Write the compact copy of the golden folder `source` into `target` (a folder, created)."""
    source, target = Path(source), Path(target)
    target.mkdir(parents=True, exist_ok=True)
    store, manifest, skeletons = _Store(), {"npz": {}, "verbatim": [], "arrays": []}, {}
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        name = path.relative_to(source).as_posix()
        if name.endswith(".pth.tar"):
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
            for keys in (keys for dropped, keys in DROPPED if dropped == name):
                _drop(checkpoint, keys)
            skeletons[name] = store.swap_tensors(checkpoint)
        elif name.endswith(".npz"):
            with np.load(path) as data:
                manifest["npz"][name] = {key: store.add(data[key]) for key in data.files}
        else:
            manifest["verbatim"].append(name)
            (target / VERBATIM / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target / VERBATIM / name)
    manifest["arrays"] = [[ref, array.dtype.str, list(array.shape)] for ref, array in store.arrays.items()]
    stream = b"".join(_shuffled(array) for array in store.arrays.values())
    (target / ARRAYS).write_bytes(lzma.compress(stream, preset=9 | lzma.PRESET_EXTREME))
    torch.save(skeletons, target / CHECKPOINTS)
    (target / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")


def unpack(source, target):
    """Rebuild the golden folder from the copy `source` into `target`; returns `target` as a Path.

    Raises ValueError when an array's bytes do not match the original's SHA-1 (a damaged copy)."""
    source, target = Path(source), Path(target)
    manifest = json.loads((source / MANIFEST).read_text())
    stream = lzma.decompress((source / ARRAYS).read_bytes())
    arrays, offset = {}, 0
    for ref, dtype, shape in manifest["arrays"]:
        size = np.dtype(dtype).itemsize * int(np.prod(shape, dtype=np.int64))
        array = _unshuffled(stream[offset:offset + size], dtype, tuple(shape))
        offset += size
        if _digest(array) != ref:
            raise ValueError(f"{source / ARRAYS}: array {ref} does not match the original's bytes; "
                             f"re-pack with `python tests/golden_copy.py ../shared/golden tests/golden`")
        arrays[ref] = array
    for name in manifest["verbatim"]:
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / VERBATIM / name, target / name)
    for name, keys in manifest["npz"].items():
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        np.savez(target / name, **{key: arrays[ref] for key, ref in keys.items()})
    tensors = {}

    def restore(value):
        if isinstance(value, str) and value.startswith(REF):
            ref = value[len(REF):]
            if ref not in tensors:
                tensors[ref] = torch.from_numpy(arrays[ref].copy())
            return tensors[ref]
        if isinstance(value, dict):
            return {key: restore(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(restore(item) for item in value)
        return value

    for name, skeleton in torch.load(source / CHECKPOINTS, weights_only=True).items():
        tensors.clear()
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        torch.save(restore(skeleton), target / name)
    return target


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python tests/golden_copy.py GOLDEN_FOLDER OUT_FOLDER  (packs e.g. ../shared/golden into "
                 "tests/golden)")
    pack(*sys.argv[1:3])
