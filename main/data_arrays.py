"""What the data loaders return (`Split`, `CSPData`) and their one reader of feature and prediction files
(`read_rows`), shared by datasets.py (the bundle) and own_data.py (your own table)."""
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional
from zipfile import BadZipFile

import numpy as np
from scipy import sparse

from . import feature_store
from . import paths

logger = logging.getLogger(__name__)

READ_CHUNK_BYTES = 64 << 20


@dataclass
class Split:
    """One split; every array has one row per kept entry, in the order of the annotation file.

    locs      (N, 2) float32, (lon, lat) in degrees; NaN where the location is unknown (kept invalid entries)
    classes   (N,) int64 class ids in [0, num_classes)
    users     (N,) int64 user ids as in the files (not remapped), -1 where unknown
    dates     (N,) float32 fraction of the year in [0, 1]; NaN where unknown; 0 for yfcc
    inds      (N,) int64 positions of the kept entries in the annotation file's image list (bird sets: in the
              list of entries with `valid_image`), which is the row order of the feature and prediction files
    split_ids (N,) evaluation groups: int64 ones, except the iNat test split: the original's bool mask of Kaggle
              'Private' (False = 'Public'), which the evaluation reports as two splits named Public and Private
    imgs      (N,) str image file names, or None (loaded with --load_img T)
    feats     (N, F) float32 image features, or None; a read-only-on-disk memory map when no row was dropped, a
              `feature_store.FileRows` (rows read when indexed) when rows were dropped and they stay in the file
              (`--feature_storage`)
    preds     (N, C) float32 image-classifier class probabilities, or None
    original_rows  (N_orig,) int64, where invalid entries are removed: for each row of the original code's arrays
              (which drop only invalid entries, not out-of-range or NaN coordinates) its row here, or -1 where this
              project drops it; the index space of the bundle's few-shot files and of `rbf_anchor_pt_ids`. None
              where invalid entries are kept.
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
        """Rows of this split (int64; -1 where this project dropped the row) of positions in the original code's
        arrays (`original_rows`); ValueError for a position outside them."""
        positions = np.asarray(positions, dtype=np.int64)
        table = self.original_rows if self.original_rows is not None else np.arange(len(self), dtype=np.int64)
        outside = (positions < 0) | (positions >= len(table))
        if outside.any():
            raise ValueError(f"position {positions[outside][0]} is outside the original code's {len(table)} "
                             f"{self.name} rows")
        return table[positions]

    def to_original(self, rows):
        """Positions in the original code's arrays (int64) of rows of this split (the inverse of `from_original`)."""
        rows = np.asarray(rows, dtype=np.int64)
        if self.original_rows is None:
            return rows
        return np.flatnonzero(self.original_rows >= 0)[rows]


@dataclass
class CSPData:
    """What `load_dataset` returns (the original's `op` dict, as fields).

    dataset            the --dataset name
    data_dir           the folder the files were read from (`paths.get_paths(f'{dataset}_data_dir')`)
    train              the training split (`Split`)
    val                the evaluation split (`Split`; val or test as asked)
    num_classes        number of classes (entries of the category file; 8142 for the real iNat2018 bundle)
    classes            dict class id -> class name
    class_of_interest  the class the original plots (3731 for iNat, 0 fmow/birds, 9 yfcc; 0 if out of range)
    """
    dataset: str
    data_dir: Path
    train: Split
    val: Split
    num_classes: int
    classes: dict
    class_of_interest: int


def data_dir_key(dataset):
    return f"{dataset}_data_dir"


def missing(dataset, path, what):
    return FileNotFoundError(f"{dataset}: {what} {path} does not exist; {paths.how_to_set(data_dir_key(dataset))}, "
                             f"or write synthetic data there with `python synthetic_data.py --dataset {dataset} "
                             f"--out DIR`")


def malformed(dataset, path, problem):
    return ValueError(f"{dataset}: {path} is malformed: {problem}. If these are the wrong files, "
                      f"{paths.how_to_set(data_dir_key(dataset))}")


def _npy_header(dataset, path):
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read(f)
            offset = f.tell()
    except ValueError as err:
        raise malformed(dataset, path, f"not a .npy array ({err})") from None
    if dtype.kind not in "fiu":
        raise malformed(dataset, path, f"its values have dtype {dtype}; expected numbers (float or integer)")
    return shape, fortran, dtype, offset


def _check_shape(dataset, path, shape, num_rows, num_cols, source, what):
    if len(shape) != 2 or shape[0] != num_rows or (num_cols is not None and shape[1] != num_cols):
        cols = num_cols if num_cols is not None else "F"
        raise malformed(dataset, path, f"{what} of shape {tuple(shape)}; expected ({num_rows}, {cols}), one row "
                                       f"per image listed in {source.name}, in that order")


def _read_npy_rows(dataset, path, rows, num_rows, num_cols, source, what, storage="device"):
    """Rows `rows` (sorted, or None for all) of a (num_rows, ·) `.npy` file as float32.

    All rows, or one consecutive run of rows, of a float32 file: a copy-on-write memory map (no copy in memory). A
    subset: one array filled chunk by chunk from the file, so that only the result is held; or, where
    `feature_store.stays_in_file(storage, size)`, a `feature_store.FileRows` that reads rows only when indexed.
    """
    if not path.is_file():
        raise missing(dataset, path, what)
    shape, fortran, dtype, offset = _npy_header(dataset, path)
    _check_shape(dataset, path, shape, num_rows, num_cols, source, what)
    consecutive = rows is not None and len(rows) and np.array_equal(rows, np.arange(rows[0], rows[0] + len(rows)))
    if rows is None or (consecutive and dtype == np.float32 and not fortran):
        try:
            if dtype == np.float32 and not fortran:
                mapped = np.load(path, mmap_mode="c")
                return mapped if rows is None else mapped[rows[0]:rows[0] + len(rows)]
            return np.load(path).astype(np.float32)
        except ValueError as err:
            raise malformed(dataset, path, f"cannot be read ({err}; truncated?)") from None
    if feature_store.stays_in_file(storage, 4 * len(rows) * shape[1]):
        return feature_store.FileRows(np.load(path, mmap_mode="r"), rows)
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
    """ValueError naming the file and its first rows with NaN or infinite values (read chunk by chunk, so that a
    memory-mapped file is not held at once). `rows`: the file rows of `data`'s rows (None: the same)."""
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
    if path.suffix == ".npz":
        data = _read_sparse_rows(dataset, path, rows, num_rows, num_cols, source, what)
    else:
        data = _read_npy_rows(dataset, path, rows, num_rows, num_cols, source, what, storage)
    _check_finite(dataset, path, data, rows, what)
    logger.info("%s: loaded %s %s from %s", dataset, what, data.shape, path)
    return data
