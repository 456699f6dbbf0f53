"""The `custom` dataset: a table of your own geotagged images plus their feature file (docs/own-data.md).

Columns: `image` (unique), `lon`, `lat` (degrees; empty = unknown), optionally `label`, `user`, `date`, `split`.
Bad input raises one ValueError naming the file, the column and the rows (0-based).
"""
import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd

from . import data_arrays
from . import feature_files
from . import image_predictions
from . import linear_probe
from . import sampling
from . import spatial_splits
from .paths import atomic_write
from .table_reader import duplicated_rows, format_rows, read_label_set, read_table

logger = logging.getLogger(__name__)

DATASET = "custom"
REQUIRED_COLUMNS = ("image", "lon", "lat")
SPLITS = ("train", "val", "test")
VAL_FRACTION = 0.2
INTEGER = r"[+-]?[0-9]+"  # a label that is an integer as written


class Observations:
    """The checked table: `ids`, `locs` (N, 2) float32 (lon, lat) degrees (NaN unknown), `classes`,
    `users` (N,) int64 (-1 unknown), `dates` (N,) float32 year fraction (NaN), `splits` (N,) str ('' = to draw) and
    `class_names`."""

    def __init__(self, path, label_set=None):
        self.path = Path(path)
        table = read_table(self.path, columns=REQUIRED_COLUMNS)
        if len(table) == 0:
            raise ValueError(f"{self.path}: the table has no rows")
        self.ids = self._image_ids(table["image"])
        self.locs = np.stack([self._coordinate(table, "lon"), self._coordinate(table, "lat")], axis=1)
        self._check_swapped(table)
        self.class_names, self.classes = self._labels(table.get("label"), label_set)
        self.users = (pd.factorize(table["user"].astype("string"))[0].astype(np.int64) if "user" in table
                      else np.full(len(table), -1, np.int64))
        self.dates = self._dates(table["date"]) if "date" in table else np.full(len(table), np.nan, np.float32)
        self.splits = self._splits(table.get("split"))

    def __len__(self):
        return len(self.ids)

    def error(self, column, rows, problem, fix):
        return ValueError(f"{self.path}: column '{column}', rows {format_rows(rows)}: {problem}; "
                          f"{fix}")

    def _image_ids(self, column):
        empty = np.flatnonzero(column.isna().to_numpy())
        if len(empty):
            raise self.error("image", empty, "no image", "every row needs its image path or id")
        ids = column.astype(str).to_numpy()
        repeated = duplicated_rows(ids)
        if len(repeated):
            raise self.error("image", repeated, f"duplicated image ids (e.g. {ids[repeated[0]]!r})",
                              "list each image once")
        return ids

    def _coordinate(self, table, column):
        cells = table[column]
        if not (pd.api.types.is_string_dtype(cells) or pd.api.types.is_object_dtype(cells)
                or pd.api.types.is_integer_dtype(cells) or pd.api.types.is_float_dtype(cells)) \
                or pd.api.types.is_bool_dtype(cells):
            raise self.error(column, np.arange(len(cells)), f"a column of {cells.dtype} values, not real numbers",
                             "give degrees as decimal numbers")
        values = pd.to_numeric(cells.astype("string") if not pd.api.types.is_numeric_dtype(cells) else cells,
                               errors="coerce").to_numpy(np.float64, na_value=np.nan)
        text = cells.notna().to_numpy()
        bad = np.flatnonzero(text & np.isnan(values))
        if len(bad):
            raise self.error(column, bad, f"not a number (e.g. {cells.iloc[bad[0]]!r})",
                             "give degrees as decimal numbers, or leave the cell empty for an unknown location")
        return values.astype(np.float32)

    def _check_swapped(self, table):
        lon, lat = self.locs[:, 0], self.locs[:, 1]
        with np.errstate(invalid="ignore"):
            bad_lat, bad_lon = np.abs(lat) > 90, np.abs(lon) > 180
        if bad_lat.any():
            swapped = (np.abs(lon[bad_lat]) <= 90).all()
            hint = ("lon and lat look swapped (these rows' lon would be valid latitudes): the table needs "
                    "'lon' = longitude, 'lat' = latitude" if swapped and bad_lat.sum() > 1 else
                    "latitudes are in [-90, 90] degrees (if lon and lat are swapped: the table needs 'lon' = "
                    "longitude, 'lat' = latitude)" if swapped else "latitudes are in [-90, 90] degrees")
            raise self.error("lat", np.flatnonzero(bad_lat), f"out of [-90, 90] (e.g. {lat[bad_lat][0]:g})", hint)
        if bad_lon.any():
            raise self.error("lon", np.flatnonzero(bad_lon), f"out of [-180, 180] (e.g. {lon[bad_lon][0]:g})",
                              "longitudes are in [-180, 180] degrees (convert 0..360 by subtracting 360 above 180)")
        half = np.isnan(lon) != np.isnan(lat)
        if half.any():
            raise self.error("lon' / 'lat", np.flatnonzero(half), "only one of lon and lat is given",
                              "give both, or leave both empty for an unknown location")

    def _labels(self, column, label_set):
        if column is None:
            if label_set is None:
                raise ValueError(f"{self.path}: no 'label' column and no --label_set; fine-tuning and evaluation "
                                 f"need labels (add a 'label' column, empty where unknown)")
            labels = pd.Series([None] * len(self.ids), dtype="string")
        else:
            labels = column.astype("string").str.strip().replace("", pd.NA)
        given = labels.dropna().unique().tolist()
        if label_set is not None:
            names = read_label_set(label_set)
        else:
            self._check_label_kinds(labels)
            names = default_label_order(given)
        if not names:
            raise ValueError(f"{self.path}: column 'label' is empty in every row; fine-tuning needs labels")
        index = pd.Index(names)
        classes = np.where(labels.isna(), -1, index.get_indexer(labels.fillna(names[0]))).astype(np.int64)
        unknown = np.flatnonzero(labels.notna().to_numpy() & ~labels.isin(names).to_numpy())
        if len(unknown):
            raise self.error("label", unknown, f"labels not in the label set --label_set {label_set} (e.g. "
                                                f"{labels.iloc[unknown[0]]!r})", "add them to the label set")
        return names, classes

    def _check_label_kinds(self, labels):
        """ValueError when some labels are integers and others not."""
        integer = labels.str.fullmatch(INTEGER).fillna(False).to_numpy(bool)
        given = labels.notna().to_numpy()
        if integer.any() and not integer[given].all():
            others = np.flatnonzero(given & ~integer)
            raise self.error("label", others, f"not integers (e.g. {labels.iloc[others[0]]!r}) although the other "
                                              f"labels are, so the class order (numeric or text) is unclear",
                             "correct these labels, or give --label_set with the classes in order")

    def _dates(self, column):
        if pd.api.types.is_datetime64_any_dtype(column):
            when, fractions = pd.to_datetime(column, utc=True), pd.Series(np.nan, index=column.index)
        else:
            text = column.astype("string").str.strip()
            fractions = pd.to_numeric(text, errors="coerce")
            when = pd.to_datetime(text.where(fractions.isna()), errors="coerce", utc=True, format="ISO8601")
        given = column.notna().to_numpy()
        bad = np.flatnonzero(given & fractions.isna().to_numpy() & when.isna().to_numpy())
        if len(bad):
            raise self.error("date", bad, f"not a date (e.g. {column.iloc[bad[0]]!r})",
                             "give ISO dates (2021-06-30 or 2021-06-30T14:05) or fractions of the year in [0, 1]; "
                             "the two may be mixed")
        fractions = fractions.to_numpy(np.float64, na_value=np.nan)
        outside = np.flatnonzero((fractions < 0) | (fractions > 1))
        if len(outside):
            raise self.error("date", outside, f"a number outside [0, 1] (e.g. {column.iloc[outside[0]]!r})",
                             "give a date (2021-06-30) or a fraction of the year in [0, 1]")
        days = np.where(when.dt.is_leap_year, 366.0, 365.0)
        of_date = (when.dt.day_of_year - 1 + when.dt.hour / 24 + when.dt.minute / 1440) / days
        return np.where(np.isnan(fractions), of_date.to_numpy(np.float64, na_value=np.nan), fractions).astype(
            np.float32)

    def _splits(self, column):
        if column is None:
            return np.full(len(self.ids), "", dtype=object)
        splits = column.astype("string").fillna("").str.strip().to_numpy(dtype=object)
        unknown = np.flatnonzero(~np.isin(splits, SPLITS + ("",)))
        if len(unknown):
            raise self.error("split", unknown, f"unknown split {splits[unknown[0]]!r}",
                              f"use {', '.join(SPLITS)} or leave it empty to have it drawn")
        unlabelled = np.flatnonzero(np.isin(splits, ("val", "test")) & (self.classes < 0))
        if len(unlabelled):
            raise self.error("split", unlabelled, "val / test rows without a label",
                              "label them, or put them into 'train' (pre-training only)")
        return splits


def default_label_order(labels):
    """Labels in class-id order: as integers if all are, else as text."""
    numeric = all(re.fullmatch(INTEGER, label) for label in labels)
    return sorted(labels, key=int if numeric else str)


INPUT_FLAGS = ("data_table", "features", "label_set", "image_predictions")  # the files a run reads


def check_input_files(runs_params):
    """FileNotFoundError listing every missing `INPUT_FLAGS` file of the runs' params."""
    missing = sorted({(flag, params[flag]) for params in runs_params for flag in INPUT_FLAGS
                      if params.get(flag) and not Path(params[flag]).is_file()})
    if missing:
        raise FileNotFoundError("these files of --dataset custom do not exist; nothing was run:\n"
                                + "\n".join(f"  --{flag} {path}" for flag, path in missing)
                                + f"\nFix: give the paths of your files (relative ones from {Path.cwd()})")


def draw_splits(obs, seed, out_dir, method="random", block_deg=spatial_splits.DEFAULT_BLOCK_DEG):
    """Fill the empty splits of `obs` in place (seeded; unlabelled rows to train): `random` (VAL_FRACTION
    of each label) or `spatial_block` (whole `block_deg` cells); written to `{out_dir}/splits/`; ValueError when that
    holds other splits."""
    undrawn = obs.splits == ""
    if not undrawn.any():
        return
    rng = np.random.default_rng(seed)
    splits = obs.splits.copy()
    splits[undrawn] = "train"
    if method == "spatial_block":
        rows = np.flatnonzero(undrawn & (obs.classes >= 0) & ~np.isnan(obs.locs[:, 0]))
        try:
            held_out = spatial_splits.block_holdout(obs.locs[rows], VAL_FRACTION, block_deg, rng)
        except ValueError as err:
            raise ValueError(f"{obs.path}: {err}") from None
        splits[rows[held_out]] = "val"
    else:
        ids = {obs.class_names[label]: label for label in np.unique(obs.classes[undrawn & (obs.classes >= 0)])}
        for name in default_label_order(list(ids)):  # so that a label set's order does not change the draw
            rows = np.flatnonzero(undrawn & (obs.classes == ids[name]))
            splits[rng.permutation(rows)[:round(VAL_FRACTION * len(rows))]] = "val"
    obs.splits = splits
    if out_dir is None:
        return
    path = Path(out_dir) / "splits" / f"{obs.path.stem}.splits.csv"
    text = pd.DataFrame({"image": obs.ids, "split": splits, "drawn": undrawn}).to_csv(index=False).encode()
    if path.is_file():
        if path.read_bytes() == text:
            return
        raise ValueError(f"{path} holds the splits an earlier run in this --model_dir drew from another table or "
                         f"with another --seed or --split_method; this run's would replace them: give this run "
                         f"another --model_dir")
    atomic_write(path, lambda handle: handle.write(text))
    how = (f"cells of {block_deg:g} degrees, {VAL_FRACTION * 100:.0f} % of the labelled rows to val"
           if method == "spatial_block" else f"{VAL_FRACTION * 100:.0f} % of each label to val")
    logger.info("%s: drew the split of %d rows (seed %d, %s), written to %s", obs.path, undrawn.sum(), seed, how,
                path)


class FeatureFile:
    """The table's feature file: `rows` (N_table,) int64 feature row per table row, `unreadable` bool."""

    def __init__(self, path, obs):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"--features {self.path} does not exist; write it with `python "
                                    f"extract_features.py --images {obs.path} --out {self.path}`")
        side = feature_files.side_files(self.path)
        try:
            self._read_side_files(side, obs)
        except ValueError as err:
            raise ValueError(f"--features {self.path}: {err}") from None

    def _read_side_files(self, side, obs):
        self.num_rows, self.num_features = feature_files.feature_shape(self.path)
        if side["progress"].is_file():
            progress = feature_files.read_progress(side["progress"], self.path)
            if progress["rows_done"] < progress["num_rows"]:
                raise ValueError(f"the extraction is unfinished ({progress['rows_done']} of {progress['num_rows']} "
                                 f"rows); run the same extract_features.py command again to finish it")
        ids = feature_files.read_rows(side["rows"], self.num_rows)["image"] if side["rows"].is_file() else None
        bad = (feature_files.read_unreadable(side["unreadable"], self.num_rows)["row"].to_numpy(np.int64)
               if side["unreadable"].is_file() else np.zeros(0, np.int64))
        if ids is not None:
            self.rows = pd.Index(ids).get_indexer(obs.ids).astype(np.int64)
            missing = np.flatnonzero(self.rows < 0)
            if len(missing):
                raise obs.error("image", missing, f"images not in the feature file {self.path} (e.g. "
                                                   f"{obs.ids[missing[0]]!r})",
                                 f"extract their features (`extract_features.py --images {obs.path}`)")
        elif self.num_rows != len(obs):
            raise ValueError(f"{self.num_rows} rows for the {len(obs)} rows of {obs.path} (and no "
                             f"{side['rows'].name} to match them by image); extract the features from the table: "
                             f"`extract_features.py --images {obs.path}`")
        else:
            self.rows = np.arange(len(obs), dtype=np.int64)
        self.unreadable = np.isin(self.rows, bad)
        if self.unreadable.any():
            logger.warning("%s: %d images could not be read (%s); their rows are left out", obs.path,
                           self.unreadable.sum(), side["unreadable"])

    def read(self, table_rows, what, storage="device"):
        """(len(table_rows), F) float32 features of those table rows."""
        file_rows = self.rows[table_rows]
        if (np.diff(file_rows) <= 0).any():
            order = np.argsort(file_rows)
            feats = self.read(table_rows[order], what)
            return feats[np.argsort(order)]
        return data_arrays.read_rows(DATASET, self.path, file_rows, self.num_rows, None,
                                     feature_files.side_files(self.path)["rows"], what, storage)


def _user_predictions(path, kind, obs, rows):
    """P(y | I) (len(rows), C) float32 from `--image_predictions` (a .npy in label-set order, or a
    table matched by name)."""
    npy = Path(path).suffix.lower() == ".npy"
    preds = image_predictions.read_image_predictions(path, obs, kind, list(obs.class_names) if npy else None,
                                                     class_source="class of the label set")
    columns, label_set = {name: column for column, name in enumerate(preds.classes)}, set(obs.class_names)
    missing = [name for name in obs.class_names if name not in columns]
    extra = [name for name in preds.classes if name not in label_set]
    if missing or extra:
        raise ValueError(f"--image_predictions {path}: its class columns are not the label set's classes ("
                         + "; ".join(part for part in (f"missing: {', '.join(missing[:5])}" if missing else "",
                                                       f"not in the label set: {', '.join(extra[:5])}" if extra else "")
                                     if part)
                         + "); give one column per class of the label set (or --label_set with your classifier's "
                           "classes)")
    order = [columns[name] for name in obs.class_names]
    return preds.probabilities(rows)[:, order].numpy().astype(np.float32)


def count_unlabelled(params):
    """The number of unlabelled rows of the table of `params` (read and checked)."""
    return int((Observations(params["data_table"], params.get("label_set")).classes < 0).sum())


def loader_flags(params, unlabelled_rows=None):
    """{flag: value} a run takes from this table (balanced_train_loader False with unlabelled rows); the table is
    read when `unlabelled_rows` (its count of them) is not given."""
    if unlabelled_rows is None:
        unlabelled_rows = count_unlabelled(params)
    return {"balanced_train_loader": False} if unlabelled_rows and params["balanced_train_loader"] else {}


def load_own_dataset(params, eval_split, train_remove_invalid, eval_remove_invalid, load_cnn_predictions=False,
                     load_cnn_features=False, load_cnn_features_train=False):
    """`datasets.load_dataset` for `--dataset custom`; P(y | I) from `--image_predictions` or
    a linear probe."""
    if not params.get("data_table"):
        raise ValueError("--dataset custom needs --data_table (a CSV or Parquet table: image, lon, lat, label, ...)")
    if eval_split not in ("val", "test"):
        raise ValueError(f"--dataset custom: --eval_split must be val or test, got {eval_split!r}")
    obs = Observations(params["data_table"], params.get("label_set"))
    draw_splits(obs, params["seed"], params["model_dir"], params["split_method"], params["block_deg"])
    feature_file = FeatureFile(params["features"], obs) if params.get("features") else None
    user_preds = params.get("image_predictions")
    need_features = load_cnn_features_train or load_cnn_features or (load_cnn_predictions and not user_preds)
    if need_features and feature_file is None:
        raise ValueError("--dataset custom needs --features (from extract_features.py) for pre-training and for the "
                         "image-only probe; or give --image_predictions and --unsuper_loss none")
    readable = ~feature_file.unreadable if feature_file is not None else np.ones(len(obs), bool)
    if not ((obs.splits == "train") & (obs.classes >= 0) & readable).any():
        raise ValueError(f"{obs.path}: no labelled train rows (columns 'label', 'split'); fine-tuning needs some")
    num_classes = len(obs.class_names)
    splits = []
    for split, remove, want_feats in (("train", train_remove_invalid, load_cnn_features_train),
                                      (eval_split, eval_remove_invalid, load_cnn_features)):
        located = ~np.isnan(obs.locs[:, 0])
        chosen = (obs.splits == split) & readable
        rows = np.flatnonzero(chosen & located) if remove else np.flatnonzero(chosen)
        logger.info("%s %s: %d rows, %d without a location %s", DATASET, split, chosen.sum(),
                    (chosen & ~located).sum(), "left out" if remove else "kept (unknown location)")
        if len(rows) == 0:
            raise ValueError(f"{obs.path}: no usable {split} rows (column 'split'); --eval_split {eval_split} "
                             f"needs labelled rows with split {eval_split!r}" if split != "train" else
                             f"{obs.path}: no usable train rows (with a location and a readable image)")
        part = data_arrays.Split(split, obs.locs[rows], obs.classes[rows], obs.users[rows], obs.dates[rows], rows,
                                 np.ones(len(rows), np.int64), obs.ids[rows] if params["load_img"] else None)
        if want_feats:
            part.feats = feature_file.read(rows, f"{split} image features", params.get("feature_storage", "auto"))
        if load_cnn_predictions and split == eval_split:
            part.preds = (_user_predictions(user_preds, params["image_predictions_kind"], obs, rows) if user_preds
                          else _probe_predictions(params, feature_file, splits[0], rows, num_classes))
        splits.append(part)
    return data_arrays.CSPData(DATASET, obs.path.parent, splits[0], splits[1], num_classes,
                               dict(enumerate(obs.class_names)), 0, int((obs.classes < 0).sum()))


def _probe_predictions(params, feature_file, train, eval_rows, num_classes):
    """P(y | I) of the eval rows from a linear probe trained on the fine-tuning rows."""
    labelled = np.flatnonzero(train.classes >= 0)
    if params["train_sample_ratio"] < 1:
        subset, _ = sampling.train_sample_indices(params, train.classes[labelled])
        labelled = labelled[subset]
    probe = linear_probe.train_probe(feature_file.read(train.inds[labelled], "probe training features"),
                                     train.classes[labelled], num_classes)
    preds = probe.predict(feature_file.read(eval_rows, "evaluation image features"))
    logger.info("image-only probe trained on %d labelled training images", len(labelled))
    return preds
