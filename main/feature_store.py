"""Training image features on the device, or left in their file and streamed (`--feature_storage` device / mapped /
auto: device when they take at most FIT_FRACTION of its free memory, else left in the file).

Streaming (`StreamedFeatures`): an epoch takes the blocks of BLOCK_BYTES of consecutive training rows in a random
order, splits that sequence into one contiguous piece per torchrun rank, and shuffles rows within windows of
WINDOW_BLOCKS blocks of each piece; a background thread reads the next window with sequential file reads while the
steps run. Every row of the epoch comes once; the order depends only on the generator (seeded per epoch), the
feature width, the batch size and the number of ranks. Block and window sizes count 4 bytes a value whatever the
file's dtype, so a float16 copy of a file streams in the same order.
"""
import itertools
import os
import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

STORAGES = ("auto", "device", "mapped")
FIT_FRACTION = 0.5
CHUNK_BYTES = 256 << 20
BLOCK_BYTES = 4 << 20
WINDOW_BLOCKS = 64
MAX_GAP_BYTES = 1 << 20
SPAN_BYTES = 16 << 20
READ_THREADS = 4


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


class FeatureFile:
    """An (N, F) float32 array-like of rows `rows` (ascending; None: all) of the (M, F) C-order array of floats that
    a `.npy` file holds from byte `offset`, read with file reads when indexed (no memory map: a file cut short while
    in use is a ValueError naming it, not a bus error)."""

    def __init__(self, path, offset, dtype, file_shape, rows=None):
        self.path, self.offset, self.file_dtype = Path(path), offset, np.dtype(dtype)
        self.num_file_rows, width = file_shape
        self.rows = np.arange(self.num_file_rows, dtype=np.int64) if rows is None else np.asarray(rows, np.int64)
        self.shape, self.dtype = (len(self.rows), width), np.dtype(np.float32)
        self.row_bytes = width * self.file_dtype.itemsize
        self.identity = _identity(os.stat(self.path))

    def __len__(self):
        return self.shape[0]

    def read(self, positions, threads=1):
        """Rows `positions` (ascending, distinct) in the file's dtype: one file read per run of nearby rows within
        one span of SPAN_BYTES of the file, runs read by `threads` threads at once (the disk answers several requests
        faster than one after another)."""
        file_rows = self.rows[positions]
        out = np.empty((len(file_rows), self.shape[1]), self.file_dtype)
        max_gap = max(1, MAX_GAP_BYTES // max(1, self.row_bytes))
        span = file_rows // max(1, SPAN_BYTES // max(1, self.row_bytes))
        starts = np.flatnonzero((np.diff(file_rows, prepend=-max_gap - 1) > max_gap)
                                | (np.diff(span, prepend=-1) != 0)).tolist()
        ends = starts[1:] + [len(file_rows)]

        def read_run(start, end):
            first, last = int(file_rows[start]), int(file_rows[end - 1])
            if last - first == end - start - 1:
                self._read_into(handle, first, out[start:end])
            else:
                span = np.empty((last - first + 1, self.shape[1]), self.file_dtype)
                self._read_into(handle, first, span)
                out[start:end] = span[file_rows[start:end] - first]

        with open(self.path, "rb", buffering=0) as handle:
            self._check_unchanged(os.fstat(handle.fileno()))
            if threads > 1 and len(starts) > 1:
                with ThreadPoolExecutor(threads) as pool:
                    list(pool.map(read_run, starts, ends))
            else:
                for start, end in zip(starts, ends):
                    read_run(start, end)
        return out if out.dtype.isnative else out.astype(out.dtype.newbyteorder("="))

    def _check_unchanged(self, stat):
        """ValueError when the file at the path is another one, or was written since it was opened (a file cut short
        is named by the read that meets its end)."""
        now = _identity(stat)
        if now[:2] != self.identity[:2] or (now[2] >= self.identity[2] and now != self.identity):
            raise ValueError(f"{self.path} was replaced or written to while in use; keep the feature file unchanged "
                             f"during a run, and start the run again")

    def _read_into(self, handle, first_row, out):
        view, done = memoryview(out).cast("B"), 0
        position = self.offset + first_row * self.row_bytes
        while done < len(view):
            try:
                count = os.preadv(handle.fileno(), [view[done:]], position + done)
            except OSError as err:
                raise OSError(err.errno, err.strerror, str(self.path)) from None
            if count == 0:
                row = first_row + done // self.row_bytes
                raise ValueError(f"{self.path} ends before row {row} of its {self.num_file_rows} rows: it was cut "
                                 f"short while in use (truncated, or written to a full disk); write it again")
            done += count

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.read(np.arange(*index.indices(len(self)))).astype(np.float32, copy=False)
        if np.ndim(index) == 0:
            return self[np.array([index])][0]
        positions, inverse = np.unique(np.asarray(index, dtype=np.int64), return_inverse=True)
        return self.read(positions)[inverse].astype(np.float32, copy=False)

    def __array__(self, dtype=None, copy=None):
        out = np.empty(self.shape, np.float32)
        step = max(1, CHUNK_BYTES // max(1, 4 * self.shape[1]))
        for start in range(0, len(self), step):
            out[start:start + step] = self[start:start + step]
        return out if dtype is None else out.astype(dtype, copy=False)


def _identity(stat):
    return stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns


def block_order(rows, generator, batch_size, world, block_rows, window_rows):
    """The rows `rows` (1-D int64 tensor, each once) of an epoch in streaming order, laid out for
    `distributed.shard`: blocks of `block_rows` consecutive rows in a random order, one contiguous piece of
    len(rows) // world rows of that sequence per rank, shuffled within windows of `window_rows`; rank r's shard of
    the result is its piece. Drawn with `generator`."""
    device, draw = rows.device, generator.device
    rows = torch.sort(rows).values
    _, counts = torch.unique_consecutive(rows // block_rows, return_counts=True)
    starts = torch.cumsum(counts, 0) - counts
    shuffled = torch.randperm(len(counts), generator=generator, device=draw).to(device)
    counts = counts[shuffled]
    offsets = starts[shuffled] - (torch.cumsum(counts, 0) - counts)
    sequence = rows[torch.repeat_interleave(offsets, counts) + torch.arange(len(rows), device=device)]
    per_rank = len(rows) // world
    pieces = sequence[:per_rank * world].view(world, per_rank)
    window = torch.arange(per_rank, device=device, dtype=torch.float64) // window_rows
    keys = torch.rand((world, per_rank), generator=generator, device=draw, dtype=torch.float64).to(device) + window
    pieces = pieces.gather(1, torch.argsort(keys, dim=1, stable=True))
    full = per_rank // batch_size * batch_size
    head = pieces[:, :full].reshape(world, -1, batch_size).transpose(0, 1).reshape(-1)
    return torch.cat([head, pieces[:, full:].reshape(-1)])


class StreamedFeatures:
    """Features left in their file (`FeatureFile`) and streamed: `order` lays out an epoch's rows, `batches` yields
    the (b, F) float32 tensors on `device` of an order's batches, read ahead by a background thread; `features[rows]`
    reads rows at random (slow). `block_rows`, `window_rows`: defaults from BLOCK_BYTES and WINDOW_BLOCKS."""

    def __init__(self, source, device, block_rows=None, window_rows=None):
        self.source, self.device, self.shape = source, device, tuple(source.shape)
        self.block_rows = block_rows or max(1, BLOCK_BYTES // (4 * self.shape[1]))
        self.window_rows = window_rows or WINDOW_BLOCKS * self.block_rows

    def __len__(self):
        return self.shape[0]

    def __getitem__(self, rows):
        index = rows.cpu().numpy() if torch.is_tensor(rows) else np.asarray(rows)
        return torch.from_numpy(self.source[index]).to(self.device)

    def order(self, rows, generator, batch_size, world=1):
        """`block_order` of `rows` with this file's block and window sizes."""
        return block_order(rows, generator, batch_size, world, self.block_rows, self.window_rows)

    def batches(self, order, batch_size):
        """The feature batches of `order` (this rank's rows), batch_size rows each (the last: the rest)."""
        order = order.cpu().numpy() if torch.is_tensor(order) else np.asarray(order)
        windows = _WindowReader(self.source, order, self.window_rows)
        try:
            loaded = {}
            for start in range(0, len(order), batch_size):
                stop = min(start + batch_size, len(order))
                parts = []
                for number in range(start // self.window_rows, (stop - 1) // self.window_rows + 1):
                    if number not in loaded:
                        loaded = {key: value for key, value in loaded.items() if key >= number - 1}
                        loaded[number] = windows.next()
                    first = number * self.window_rows
                    positions, data = loaded[number]
                    parts.append(data[positions[max(start, first) - first:stop - first]])
                batch = torch.from_numpy(parts[0] if len(parts) == 1 else np.concatenate(parts))
                yield batch.to(self.device).float()
        finally:
            windows.stop()


class _WindowReader:
    """A background thread reading the windows of `order` in turn: (positions of the window's rows in `data`, data)
    per window, one window ahead; an error in the thread is raised by `next`."""

    def __init__(self, source, order, window_rows):
        self.ready, self.stopping = queue.Queue(maxsize=1), threading.Event()
        windows = [order[start:start + window_rows] for start in range(0, len(order), window_rows)]
        self.thread = threading.Thread(target=self._run, args=(source, windows), daemon=True)
        self.thread.start()

    def _run(self, source, windows):
        try:
            for rows in windows:
                distinct, positions = np.unique(rows, return_inverse=True)
                self._put((positions, source.read(distinct, READ_THREADS)))
        except BaseException as err:  # raised in the consuming thread
            self._put(err)

    def _put(self, item):
        while not self.stopping.is_set():
            try:
                self.ready.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def next(self):
        item = self.ready.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def stop(self):
        self.stopping.set()
        self.thread.join()


class MappedFeatures:
    """`features[rows]` (rows: int64 tensor) = the (len(rows), F) float32 tensor on `device` of an (N, F) array in
    host memory, gathered in row order; to a GPU through two pinned buffers used in turn."""

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


def epoch_order(features, rows, generator, batch_size, world=1):
    """An epoch's rows `rows` (a shuffled int64 tensor) in the order the features serve best: `StreamedFeatures`'
    block order, else `rows` as they are."""
    if isinstance(features, StreamedFeatures):
        return features.order(rows, generator, batch_size, world)
    return rows


def batches(features, order, batch_size):
    """Iterator over the (b, F) float32 feature batches of `order` (consecutive slices of batch_size rows):
    streamed, or `features[rows]` per batch; None forever for no features."""
    if features is None:
        return itertools.repeat(None)
    if isinstance(features, StreamedFeatures):
        return features.batches(order, batch_size)
    return (features[order[start:start + batch_size]] for start in range(0, len(order), batch_size))


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
    """The training features (None for None) as a tensor on `device`, a `StreamedFeatures` (a `FeatureFile` that is
    not to be on the device) or a `MappedFeatures` (an array in host memory that does not fit a GPU, or mapped)."""
    if source is None:
        return None
    if storage not in STORAGES:
        raise ValueError(f"--feature_storage {storage!r} is unknown; use one of {', '.join(STORAGES)}")
    nbytes = 4 * source.shape[0] * source.shape[1]
    on_device = storage == "device" or (storage == "auto" and (device.type == "cuda" and fits(nbytes, device)))
    if isinstance(source, FeatureFile):
        return _to_device(source, device) if on_device else StreamedFeatures(source, device)
    if on_device or (storage == "auto" and device.type == "cpu"):
        return _to_device(source, device)
    return MappedFeatures(source, device)
