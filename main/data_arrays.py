"""What the data loaders return (`Split`, `CSPData`) and their one reader of feature and prediction files
(`read_rows`), shared by datasets.py (the bundle) and own_data.py (your own table)."""
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional
from zipfile import BadZipFile

import numpy as np
from scipy import sparse

from . import feature_files
from . import feature_store
from . import paths

logger = logging.getLogger(__name__)

READ_CHUNK_BYTES = 64 << 20


@dataclass
class Split:
    """One split, a row per kept entry in file order.

    locs (N, 2) float32 (lon, lat) degrees, NaN where unknown; classes (N,) int64 in [0, C) (-1: unlabelled, own
    data); users (N,) int64, -1 where unknown; dates (N,) float32 fraction of the year, NaN where unknown; inds
    (N,) int64 rows of the feature and prediction files; split_ids (N,) evaluation groups (the iNat test split:
    the Kaggle Private mask); imgs (N,) str or None; feats (N, F) float32 (a memory map or
    `feature_store.FeatureFile`) or None; preds (N, C) float32 class probabilities or None; original_rows (N_orig,)
    int64: the row here of each row of the original code's arrays, which keep NaN or out-of-range coordinates (-1:
    dropped here; None where invalid entries are kept).
    """
    name: str
    locs: np.ndarray
    classes: np.ndarray
    users: np.ndarray
    dates: np.ndarray
    inds: np.ndarray
    split_ids: np.ndarray
    imgs: Optional[np.ndarray] = None
    feats: Optional[np.ndarray] = None
    preds: Optional[np.ndarray] = None
    original_rows: Optional[np.ndarray] = None

    def __len__(self):
        return len(self.classes)

    def from_original(self, positions):
        """Rows here (-1: dropped) of positions in the original code's arrays; ValueError outside them."""
        positions = np.asarray(positions, dtype=np.int64)
        table = self.original_rows if self.original_rows is not None else np.arange(len(self), dtype=np.int64)
        outside = (positions < 0) | (positions >= len(table))
        if outside.any():
            raise ValueError(f"position {positions[outside][0]} is outside the original code's {len(table)} "
                             f"{self.name} rows")
        return table[positions]

    def to_original(self, rows):
        """Positions in the original code's arrays of rows here (the inverse of `from_original`)."""
        rows = np.asarray(rows, dtype=np.int64)
        if self.original_rows is None:
            return rows
        return np.flatnonzero(self.original_rows >= 0)[rows]


@dataclass
class CSPData:
    """What a loader returns (the original's `op` dict, as fields): the --dataset name, the folder read, the
    training and evaluation `Split`s, the number of classes, {class id: name}, the class the maps show and the
    number of unlabelled rows in the whole table read (own data)."""
    dataset: str
    data_dir: Path
    train: Split
    val: Split
    num_classes: int
    classes: dict
    class_of_interest: int
    unlabelled_rows: int = 0


def data_dir_key(dataset):
    return f"{dataset}_data_dir"


def missing(dataset, path, what):
    if path.is_dir():
        return ValueError(f"{dataset}: {what} {path} is a folder; give the .npy file itself")
    return FileNotFoundError(f"{dataset}: {what} {path} does not exist; {paths.how_to_set(data_dir_key(dataset))}, "
                             f"or write synthetic data there with `python synthetic_data.py --dataset {dataset} "
                             f"--out DIR`")


def malformed(dataset, path, problem):
    return ValueError(f"{dataset}: {path} is malformed: {problem}. If these are the wrong files, "
                      f"{paths.how_to_set(data_dir_key(dataset))}")


def _npy_layout(dataset, path):
    try:
        layout = feature_files.npy_layout(path)
    except feature_files.NPY_ERRORS as err:
        raise malformed(dataset, path, f"not a .npy array ({err})") from None
    if layout.dtype.kind not in "fiu":
        raise malformed(dataset, path, f"its values have dtype {layout.dtype}; expected numbers (float or integer)")
    return layout


def _check_shape(dataset, path, shape, num_rows, num_cols, source, what):
    if len(shape) == 2 and not shape[1]:
        raise malformed(dataset, path, f"{what} of shape {tuple(shape)}: it holds no column; write the features")
    if len(shape) != 2 or shape[0] != num_rows or (num_cols is not None and shape[1] != num_cols):
        cols = num_cols if num_cols is not None else "F"
        raise malformed(dataset, path, f"{what} of shape {tuple(shape)}; expected ({num_rows}, {cols}), one row "
                                       f"per image listed in {source.name}, in that order")


def _check_size(dataset, path, layout):
    shape, _, dtype, _, expected, size = layout
    if size != expected:
        raise malformed(dataset, path, f"the file holds {size} bytes, but its header announces a {tuple(shape)} "
                                       f"{dtype} array, {expected} bytes with the header ("
                                       f"{'truncated, or written to a full disk' if size < expected else 'damaged'}"
                                       f"?); write it again")


def _read_npy_rows(dataset, path, rows, num_rows, num_cols, source, what, storage="device"):
    """Rows `rows` (sorted, or None for all) of a (num_rows, ·) `.npy` file as float32: left in the file as a
    `feature_store.FeatureFile` where `storage` says so, else a copy-on-write memory map for all or a consecutive
    run of a float32 file's rows, else read chunk by chunk into one array."""
    if not path.is_file():
        raise missing(dataset, path, what)
    layout = _npy_layout(dataset, path)
    shape, fortran, dtype, offset = layout[:4]
    _check_shape(dataset, path, shape, num_rows, num_cols, source, what)
    _check_size(dataset, path, layout)
    kept = num_rows if rows is None else len(rows)
    if feature_store.stays_in_file(storage, 4 * kept * shape[1]):
        if fortran:
            raise malformed(dataset, path, "its rows are stored in Fortran (column) order, which cannot be streamed "
                                           "from the file; write it in row order, e.g. np.save(path, "
                                           "np.ascontiguousarray(np.load(path)))")
        return feature_store.FeatureFile(path, offset, dtype, shape, rows)
    consecutive = rows is not None and len(rows) and np.array_equal(rows, np.arange(rows[0], rows[0] + len(rows)))
    if rows is None or (consecutive and dtype == np.float32 and not fortran):
        try:
            if dtype == np.float32 and not fortran:
                mapped = np.load(path, mmap_mode="c")
                return mapped if rows is None else mapped[rows[0]:rows[0] + len(rows)]
            return np.load(path).astype(np.float32)
        except ValueError as err:
            raise malformed(dataset, path, f"cannot be read ({err}; truncated?)") from None
    if fortran:
        return np.asarray(np.load(path, mmap_mode="r")[rows], dtype=np.float32)
    width = shape[1]
    out = np.empty((len(rows), width), np.float32)
    chunk_rows = max(1, READ_CHUNK_BYTES // max(1, width * dtype.itemsize))
    buf = np.empty((chunk_rows, width), dtype)
    done = 0
    with open(path, "rb") as f:
        for start in range(0, num_rows, chunk_rows):
            stop = min(start + chunk_rows, num_rows)
            hi = np.searchsorted(rows, stop)
            if hi == done:
                continue
            f.seek(offset + start * width * dtype.itemsize)
            block = buf[: stop - start]
            if f.readinto(memoryview(block).cast("B")) != block.nbytes:
                raise malformed(dataset, path, f"the file ends before row {stop} of {num_rows} (truncated?)")
            out[done:hi] = block[rows[done:hi] - start]
            done = hi
    return out


def _read_sparse_rows(dataset, path, rows, num_rows, num_cols, source, what):
    if not path.is_file():
        raise missing(dataset, path, what)
    try:
        matrix = sparse.load_npz(path)
    except (ValueError, OSError, BadZipFile, KeyError) as err:
        raise malformed(dataset, path, f"not a scipy sparse .npz ({err})") from None
    _check_shape(dataset, path, matrix.shape, num_rows, num_cols, source, what)
    matrix = matrix.tocsr().astype(np.float32)
    if rows is not None:
        matrix = matrix[rows]
    return matrix.toarray()


def _check_finite(dataset, path, data, rows, what):
    chunk = max(1, READ_CHUNK_BYTES // max(1, data.shape[1] * data.dtype.itemsize))
    bad = []
    for start in range(0, len(data), chunk):
        found = np.flatnonzero(~np.isfinite(data[start:start + chunk]).all(axis=1)) + start
        bad.extend(found.tolist())
        if len(bad) >= 5:
            break
    if bad:
        file_rows = bad[:5] if rows is None else rows[bad[:5]].tolist()
        raise malformed(dataset, path, f"the {what} hold NaN or infinite values, first in file rows "
                                       f"{', '.join(map(str, file_rows))}; recompute them (a NaN input makes a "
                                       f"NaN model)")


def read_rows(dataset, path, rows, num_rows, num_cols, source, what, storage="device"):
    """Rows `rows` (sorted, or None for all) of a (num_rows, num_cols or any) feature (`.npy`) or prediction
    (`.npy`, scipy sparse `.npz`) file as float32, checked finite; errors name the file and the rows, `source`
    (the file listing the images) and `what` is read."""
    if path.suffix == ".npz":
        data = _read_sparse_rows(dataset, path, rows, num_rows, num_cols, source, what)
    else:
        data = _read_npy_rows(dataset, path, rows, num_rows, num_cols, source, what, storage)
    _check_finite(dataset, path, data, rows, what)
    streamed = " (left in the file and streamed: block shuffle, docs/scaling.md)" \
        if isinstance(data, feature_store.FeatureFile) else ""
    logger.info("%s: loaded %s %s from %s%s", dataset, what, data.shape, path, streamed)
    return data
