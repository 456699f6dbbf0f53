"""Training image features on the device, or left in their memory-mapped file and read batch by batch
(`--feature_storage` device / mapped / auto: device when they take at most FIT_FRACTION of its free memory).
"""
import os

import numpy as np
import torch

STORAGES = ("auto", "device", "mapped")
FIT_FRACTION = 0.5
CHUNK_BYTES = 256 << 20


def available_memory(device):
    """Bytes free on `device`: a GPU's free memory, or the host's MemAvailable."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def fits(nbytes, device):
    """True when `nbytes` take at most FIT_FRACTION of what `device` has free."""
    return nbytes <= FIT_FRACTION * available_memory(device)


def stays_in_file(storage, nbytes):
    """Whether a loader leaves `nbytes` of features in their file (mapped, or auto when they do not fit)."""
    return storage == "mapped" or (storage == "auto" and not fits(nbytes, torch.device("cpu")))


class FileRows:
    """An (N, F) float32 array-like of rows `rows` (ascending) of a memory-mapped (M, F) array, read when indexed."""

    def __init__(self, array, rows):
        self.array, self.rows = array, np.asarray(rows, dtype=np.int64)
        self.shape, self.dtype = (len(self.rows), array.shape[1]), np.dtype(np.float32)

    def __len__(self):
        return self.shape[0]

    def __getitem__(self, index):
        return np.asarray(self.array[self.rows[index]], dtype=np.float32)

    def __array__(self, dtype=None, copy=None):
        out = np.empty(self.shape, np.float32)
        step = max(1, CHUNK_BYTES // max(1, 4 * self.shape[1]))
        for start in range(0, len(self), step):
            out[start:start + step] = self[start:start + step]
        return out if dtype is None else out.astype(dtype, copy=False)


class MappedFeatures:
    """`features[rows]` (rows: int64 tensor) = the (len(rows), F) float32 tensor on `device` of an (N, F) array,
    memory map or `FileRows`, read in file order; to a GPU through two pinned buffers used in turn."""

    def __init__(self, source, device):
        self.source, self.device, self.shape = source, device, tuple(source.shape)
        self.pinned = device.type == "cuda"
        self._buffers, self._events, self._turn = [None, None], [None, None], 0

    def __len__(self):
        return self.shape[0]

    def _host(self, count):
        if not self.pinned:
            return torch.empty((count, self.shape[1]), dtype=torch.float32)
        turn = self._turn = 1 - self._turn
        if self._events[turn] is not None:
            self._events[turn].synchronize()
        if self._buffers[turn] is None or len(self._buffers[turn]) < count:
            self._buffers[turn] = torch.empty((count, self.shape[1]), dtype=torch.float32, pin_memory=True)
        return self._buffers[turn][:count]

    def __getitem__(self, rows):
        index = rows.cpu().numpy() if torch.is_tensor(rows) else np.asarray(rows)
        order = np.argsort(index, kind="stable")
        host = self._host(len(index))
        host.numpy()[order] = self.source[index[order]]
        if not self.pinned:
            return host
        out = host.to(self.device, non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        self._events[self._turn] = event
        return out


def _to_device(source, device):
    if device.type == "cpu":
        array = np.asarray(source)
        return torch.from_numpy(array if array.dtype == np.float32 else array.astype(np.float32))
    out = torch.empty(tuple(source.shape), dtype=torch.float32, device=device)
    step = max(1, CHUNK_BYTES // max(1, 4 * source.shape[1]))
    for start in range(0, len(out), step):
        chunk = np.asarray(source[start:start + step], dtype=np.float32)
        out[start:start + len(chunk)] = torch.from_numpy(chunk).to(device)
    return out


def training_features(source, device, storage="auto"):
    """The training features (None for None) as a tensor on `device` or a `MappedFeatures`, as `storage` asks;
    both answer `features[rows]` with a (len(rows), F) float32 tensor on `device`."""
    if source is None:
        return None
    if storage == "auto" and device.type == "cpu":
        storage = "mapped" if isinstance(source, FileRows) else "device"
    elif storage == "auto":
        storage = "device" if fits(4 * source.shape[0] * source.shape[1], device) else "mapped"
    if storage == "device":
        return _to_device(source, device)
    if storage == "mapped":
        return MappedFeatures(source, device)
    raise ValueError(f"--feature_storage {storage!r} is unknown; use one of {', '.join(STORAGES)}")
