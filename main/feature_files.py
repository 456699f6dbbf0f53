"""The side files of a feature file `x.npy`: `x.rows.csv` (row → image id and source file),
`x.unreadable.csv` and `x.progress.json`. Readers raise one ValueError naming the file, the column or key, the rows
and the fix.
"""
import csv
import json
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from .paths import atomic_write
from .table_reader import duplicated_rows, format_rows

PROGRESS_FORMAT = "csp-features/2"
SOURCE_COLUMNS = ("path", "bytes", "mtime_ns")
UNREADABLE_COLUMNS = ("row", "image", "error")


def side_files(out):
    """{'rows', 'unreadable', 'progress'}: the paths beside the feature file `out`."""
    stem = Path(out).with_suffix("")
    return {"rows": Path(f"{stem}.rows.csv"), "unreadable": Path(f"{stem}.unreadable.csv"),
            "progress": Path(f"{stem}.progress.json")}


def _restart(out):
    files = side_files(out)
    return f"delete {out} and its {', '.join(p.name for p in files.values())} to extract again"


def write_csv(path, table):
    text = table.to_csv(index=False).encode()
    atomic_write(path, lambda handle: handle.write(text))


def read_rows(path, num_rows=None):
    """The rows file as a DataFrame, one row per feature row."""
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], encoding="utf-8")
    except (OSError, ValueError, pd.errors.ParserError) as err:
        raise ValueError(f"{path} cannot be read as a table ({str(err).splitlines()[0]}); it maps feature rows to "
                         f"images: extract the features again") from None
    if "image" not in table.columns:
        raise ValueError(f"{path}: no column 'image' (it has {', '.join(map(repr, table.columns))}); it maps feature "
                         f"rows to images: extract the features again")
    empty = np.flatnonzero(table["image"].isna().to_numpy())
    repeated = duplicated_rows(table["image"].to_numpy())
    for rows, problem in ((empty, "no image id"), (repeated, "repeated image ids")):
        if len(rows):
            raise ValueError(f"{path}: column 'image', rows {format_rows(rows)}: {problem} (e.g. "
                             f"{table['image'].iloc[rows[0]]!r}); each feature row needs one image, listed once: "
                             f"extract the features again")
    if num_rows is not None and len(table) != num_rows:
        raise ValueError(f"{path} maps {len(table)} rows, but its feature file has {num_rows}; the two files do not "
                         f"belong together: extract the features again")
    return table


def sources_table(ids, paths, out):
    """`ids` and their files: path (relative to the feature file's folder), bytes and modification
    time (-1 when unreachable)."""
    folder = os.path.realpath(Path(out).parent)
    columns = {"row": np.arange(len(ids)), "image": list(ids), "path": [], "bytes": [], "mtime_ns": []}
    for path in paths:
        try:
            info = os.stat(path)
            size, mtime = info.st_size, info.st_mtime_ns
        except OSError:
            size = mtime = -1
        relative = os.path.relpath(os.path.realpath(path), folder)
        columns["path"].append(os.fsencode(relative).decode("utf-8", "backslashreplace"))
        columns["bytes"].append(size)
        columns["mtime_ns"].append(mtime)
    return pd.DataFrame(columns)


def changed_rows(recorded, current):
    """Rows whose image id or file differ between two rows tables."""
    if len(recorded) != len(current) or not set(SOURCE_COLUMNS) <= set(recorded.columns):
        return np.arange(max(len(recorded), len(current)))
    columns = ["image", *SOURCE_COLUMNS]
    differ = recorded[columns].astype(str).to_numpy() != current[columns].astype(str).to_numpy()
    return np.flatnonzero(differ.any(axis=1))


def start_unreadable(path):
    with open(path, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerow(UNREADABLE_COLUMNS)


def append_unreadable(path, entries):
    """Append (row, image, error) entries, synced to disk."""
    with open(path, "a", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(entries)
        handle.flush()
        os.fsync(handle.fileno())


def read_unreadable(path, num_rows):
    """The unreadable report (row int64 in [0, num_rows), image, error)."""
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    except (OSError, ValueError, pd.errors.ParserError) as err:
        raise ValueError(f"{path} cannot be read as a table ({str(err).splitlines()[0]}); it lists the unreadable "
                         f"images of its feature file: extract the features again") from None
    missing = [c for c in UNREADABLE_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(map(repr, missing))}; it lists the unreadable images "
                         f"of its feature file: extract the features again")
    rows = pd.to_numeric(table["row"], errors="coerce").to_numpy(np.float64)
    bad = np.flatnonzero(~np.isfinite(rows) | (rows != np.round(rows)) | (rows < 0) | (rows >= num_rows))
    if len(bad):
        raise ValueError(f"{path}: column 'row', rows {format_rows(bad)}: not a feature row in [0, {num_rows}) (e.g. "
                         f"{table['row'].iloc[bad[0]]!r}): extract the features again")
    return table.assign(row=rows.astype(np.int64))


def keep_unreadable(path, rows_done, num_rows):
    """Drop the report lines of rows >= rows_done."""
    table = read_unreadable(path, num_rows)
    write_csv(path, table[table["row"] < rows_done])


def write_progress(path, settings, rows_done, num_rows):
    text = json.dumps({"format": PROGRESS_FORMAT, "settings": settings, "rows_done": rows_done,
                       "num_rows": num_rows}, indent=1).encode()
    atomic_write(path, lambda handle: handle.write(text))


def read_progress(path, out):
    """The checked progress record {'settings', 'rows_done', 'num_rows'} of `out`."""
    fix = _restart(out)
    try:
        progress = json.loads(Path(path).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is malformed: not JSON ({err}); {fix}") from None
    if not isinstance(progress, dict) or progress.get("format") != PROGRESS_FORMAT:
        found = progress.get("format") if isinstance(progress, dict) else type(progress).__name__
        raise ValueError(f"{path} is malformed or of another version (format {found!r}, expected "
                         f"{PROGRESS_FORMAT!r}); {fix}")
    for key in ("rows_done", "num_rows"):
        if type(progress.get(key)) is not int or progress[key] < 0:
            raise ValueError(f"{path} is malformed: '{key}' is {progress.get(key)!r}, not a count; {fix}")
    if not isinstance(progress.get("settings"), dict):
        raise ValueError(f"{path} is malformed: no 'settings' record; {fix}")
    shape = feature_shape(out)
    if progress["num_rows"] != shape[0] or progress["rows_done"] > progress["num_rows"]:
        raise ValueError(f"{path} claims {progress['rows_done']} of {progress['num_rows']} rows done, but {out} has "
                         f"{shape[0]} rows; it does not describe that file: {fix}")
    return progress


class NpyLayout(NamedTuple):
    """A .npy file as its header describes it: `shape`, `fortran` order, `dtype`, the data's byte `offset`, the
    `expected` file size in bytes, and its actual `size`."""
    shape: tuple
    fortran: bool
    dtype: np.dtype
    offset: int
    expected: int
    size: int


NPY_ERRORS = (ValueError, EOFError, SyntaxError)  # what numpy's header reader raises for a file that is no .npy


def npy_layout(path):
    """The `NpyLayout` of the .npy file `path`, read from its header alone; one of NPY_ERRORS when it is none."""
    with open(path, "rb") as handle:
        version = np.lib.format.read_magic(handle)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read_header(handle)
        offset = handle.tell()
        size = os.fstat(handle.fileno()).st_size
    return NpyLayout(shape, fortran, dtype, offset, offset + int(np.prod(shape)) * dtype.itemsize, size)


def feature_shape(path):
    """(rows, features) of a float32 .npy feature file; ValueError when its size does not match."""
    path = Path(path)
    if path.suffix != ".npy":
        raise ValueError(f"{path} is not a .npy file{' (a .npz archive)' if path.suffix == '.npz' else ''}; give the "
                         f".npy feature file that extract_features.py writes (or np.save one (rows, features) "
                         f"float array)")
    try:
        shape, fortran, dtype, _, expected, size = npy_layout(path)
    except NPY_ERRORS as err:
        raise ValueError(f"{path} is not a .npy array ({str(err).splitlines()[0]})") from None
    if len(shape) != 2 or dtype.hasobject or fortran:
        raise ValueError(f"{path}: a {dtype} array of shape {shape}{' (Fortran order)' if fortran else ''}; expected "
                         f"(rows, features) numbers in C order")
    if size != expected:
        raise ValueError(f"{path} has {size:,} bytes, but its header describes {shape[0]} x {shape[1]} {dtype} = "
                         f"{expected:,} bytes: the file is truncated or damaged; extract the features again")
    return shape


def recorded_backbone(features):
    """The backbone recorded beside `features`, or None."""
    progress = side_files(features)["progress"]
    if not (progress.is_file() and Path(features).is_file()):
        return None
    backbone = read_progress(progress, features)["settings"].get("backbone")
    return backbone if isinstance(backbone, str) else None
