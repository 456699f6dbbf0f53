"""An image classifier's output for a table's rows (`--image_predictions`), read and checked once: a `.npy`
(one row per table row, columns in a class list's order) or a CSV / Parquet with `image` and one column per class
name (each once; rows of other images are ignored and counted). `probabilities` must be finite, >= 0, rows summing
to 1 (SUM_TOLERANCE); `logits` finite. Errors name the file, the rows and the fix.
"""
import csv
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .table_reader import TABLE_SUFFIXES, duplicated_rows, format_rows, read_table

KINDS = ("probabilities", "logits")
SUM_TOLERANCE = 1e-3
CHUNK_ROWS = 8192


@dataclass
class ImagePredictions:
    """`values` (N, C) (a memory map for .npy), `classes` (C names, column order), `kind`, `unused` (rows for
    images not in the table: ignored); `probabilities(rows)`: the rows' (n, C) float64 tensor."""
    values: object
    classes: list
    kind: str
    path: Path
    unused: int = 0

    def probabilities(self, rows):
        block = torch.from_numpy(np.array(self.values[rows], dtype=np.float64))
        return torch.softmax(block, dim=1) if self.kind == "logits" else block


def read_image_predictions(path, table, kind, classifier_classes=None, flag="--image_predictions",
                           class_source="line of --classifier_classes"):
    """The checked classifier output for the rows of `table` (`own_data.Observations`), in
    table order; a .npy's columns are `classifier_classes`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{flag} {path} does not exist")
    if path.suffix.lower() == ".npy":
        if classifier_classes is None:
            raise ValueError(f"{flag} {path}: a .npy has no class names; give --classifier_classes (a text file, one "
                             f"class name per line in column order), or a CSV / Parquet with one column per class")
        values = _read_npy(path, flag)
        if values.shape != (len(table), len(classifier_classes)):
            raise ValueError(f"{flag} {path}: shape {values.shape}; expected ({len(table)}, "
                             f"{len(classifier_classes)}): one row per row of {table.path} and one column per "
                             f"{class_source}")
        classes, unused = list(classifier_classes), 0
    elif path.suffix.lower() in TABLE_SUFFIXES:
        if classifier_classes is not None:
            raise ValueError(f"--classifier_classes is for a .npy {flag}; {path} names its classes in its columns")
        values, classes, unused = _read_prediction_table(path, table, flag)
    else:
        raise ValueError(f"{flag} {path}: give a .npy, .csv or .parquet file")
    _check_values(values, kind, path, flag)
    return ImagePredictions(values, classes, kind, path, unused)


def _read_npy(path, flag):
    try:
        values = np.load(path, mmap_mode="r")
    except (OSError, ValueError) as err:
        raise ValueError(f"{flag} {path} is not a .npy array: {err}") from None
    if values.ndim != 2 or not (np.issubdtype(values.dtype, np.floating) or np.issubdtype(values.dtype, np.integer)):
        raise ValueError(f"{flag} {path}: a {values.ndim}-d array of {values.dtype}; expected (rows, classes) numbers")
    return values


def _read_prediction_table(path, table, flag):
    frame = read_table(path, columns=["image"])
    classes = [str(name) for name in frame.columns if name != "image"]
    repeated = _repeated_columns(path)
    if repeated:
        raise ValueError(f"{flag} {path}: column(s) {', '.join(map(repr, repeated))} appear more than once; give "
                         f"each class one column")
    if not classes:
        raise ValueError(f"{flag} {path}: no class columns; give 'image' and one column per class name")
    ids = frame["image"].astype(str).to_numpy()
    repeated = duplicated_rows(ids)
    if len(repeated):
        raise ValueError(f"{flag} {path}: column 'image', rows {format_rows(repeated)}: repeated images (e.g. "
                         f"{ids[repeated[0]]!r}); give each image once")
    order = pd.Index(ids).get_indexer(table.ids)
    missing = np.flatnonzero(order < 0)
    if len(missing):
        raise table.error("image", missing, f"no predictions for these images in {flag} {path} (e.g. "
                                            f"{table.ids[missing[0]]!r})", "give a row of predictions per image")
    values = frame.iloc[order][classes]
    numbers = values.apply(pd.to_numeric, errors="coerce")
    text = values.notna().to_numpy()
    bad = np.flatnonzero((numbers.isna().to_numpy() & text).any(axis=1))
    if len(bad):
        raise ValueError(f"{flag} {path}: rows {format_rows(order[bad])}: values that are not numbers; give "
                         f"decimal numbers")
    return numbers.to_numpy(np.float64), classes, len(ids) - len(table)


def _repeated_columns(path):
    """The header names a CSV gives more than once (pandas would rename them `name.1`); Parquet has none."""
    if path.suffix.lower() != ".csv":
        return []
    with open(path, encoding="utf-8-sig", newline="") as handle:
        header = next(csv.reader(handle), [])
    return sorted(name for name, count in Counter(header).items() if count > 1)


def _check_values(values, kind, path, flag):
    """ValueError naming the rows that are not finite, or (probabilities) negative or not summing to 1."""
    problems = {"NaN, infinite or empty values": [], "negative values": [], "rows not summing to 1": []}
    for start in range(0, len(values), CHUNK_ROWS):
        block = np.asarray(values[start:start + CHUNK_ROWS], dtype=np.float64)
        finite = np.isfinite(block).all(axis=1)
        problems["NaN, infinite or empty values"] += list(start + np.flatnonzero(~finite))
        if kind == "probabilities":
            problems["negative values"] += list(start + np.flatnonzero(finite & (block < 0).any(axis=1)))
            off = np.abs(block.sum(axis=1) - 1.0) > SUM_TOLERANCE
            problems["rows not summing to 1"] += list(start + np.flatnonzero(finite & off))
    fixes = {"NaN, infinite or empty values": "give a number for every class",
             "negative values": "probabilities are >= 0; for scores before the softmax use "
                                "--image_predictions_kind logits",
             "rows not summing to 1": f"probabilities sum to 1 (within {SUM_TOLERANCE}); normalise them, or use "
                                      f"--image_predictions_kind logits for scores before the softmax"}
    for problem, rows in problems.items():
        if rows:
            raise ValueError(f"{flag} {path}: rows {format_rows(rows)}: {problem}; {fixes[problem]}")
