"""The CSP data bundle (`geo_prior_data_csp/`), read as the original read it: `load_dataset` returns a
`CSPData`. Invalid entries (no longitude or user; bird sets: also no date) and NaN or out-of-range coordinates are
dropped where the caller asks (training always), else kept with a NaN location, with a warning counting them.
"""
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from . import own_data
from . import paths
from .data_arrays import CSPData, Split, data_dir_key, malformed, missing, read_rows
from .feature_files import side_files

logger = logging.getLogger(__name__)

# (num_classes, class_of_interest) of the original, per dataset; num_classes is read from the category file and
# equals these numbers for the real bundle.
DATASET_INFO = {
    "inat_2018": (8142, 3731), "inat_2017": (5089, 3731), "fmow": (62, 0),
    "birdsnap": (500, 0), "nabirds": (555, 0), "yfcc": (100, 9),
}
INAT_STYLE = ("inat_2018", "inat_2017", "fmow")
BIRD_FILES = {"birdsnap": "birdsnap_with_loc_2019.json", "nabirds": "nabirds_with_loc_2019.json"}
YFCC_FILE = "train_test_split.csv"
YFCC_CLASS_FILE = "class_names.csv"
# the share of located entries out of range (with few out of range when lon and lat are exchanged) that says
# "the columns are swapped" rather than "a few bad rows"
SWAPPED_MIN_FRACTION = 0.1


# ----------------------------------------------------------------------------------------------------------------
# file names (relative to the dataset folder)

def _year(dataset):
    return dataset[-4:]


def annotation_files(dataset, split):
    """(location file, annotation file) of an iNat-style split."""
    if dataset == "fmow":
        if split == "test":
            raise ValueError("fmow: the bundle has no test split (the original raises too); use --eval_split val")
        return f"{split}_location.json", f"{split}.json"
    year = _year(dataset)
    ann = f"{split}{year}_DO_NOT_SHARE.json" if split == "test" else f"{split}{year}.json"
    return f"{split}{year}_locations.json", ann


def category_file(dataset):
    if dataset in BIRD_FILES:
        return BIRD_FILES[dataset]
    if dataset == "yfcc":
        return YFCC_CLASS_FILE
    return "category.json" if dataset == "fmow" else f"categories{_year(dataset)}.json"


def kaggle_file(dataset):
    """The Kaggle solution file of an iNat test split."""
    return f"kaggle_solution_{_year(dataset)}_DO_NOT_SHARE.csv"


def _file_prefix(dataset):
    return {"inat_2018": "inat2018", "inat_2017": "inat2017", "fmow": "fmow", "yfcc": "YFCC"}.get(dataset, dataset)


def feature_file(dataset, split, resolution="standard", cnn_model="inception_v3"):
    """Image-feature file of a split, (N_all, F) `.npy` in the annotation file's order."""
    prefix = _file_prefix(dataset)
    if dataset == "inat_2018" and resolution == "high_res":
        return f"features_inception_hr/{prefix}_{split}_net_feats.npy"
    if dataset in ("inat_2018", "inat_2017", "fmow") and resolution == "pretrain":
        folder = "features_inception_pretrain"
        if dataset == "inat_2018" and cnn_model != "inception_v3":
            folder += f"-{cnn_model}"
        return f"{folder}/{prefix}_{split}_pretrain_net_feats.npy"
    if dataset == "fmow" or (dataset == "inat_2017" and resolution == "high_res"):
        allowed = "pretrain" if dataset == "fmow" else "standard or pretrain"
        raise ValueError(f"{dataset}: image features exist only for --inat2018_resolution {allowed}, "
                         f"got {resolution!r}")
    return f"features_inception/{prefix}_{split}_net_feats.npy"


def prediction_file(dataset, split, pred_type="full", ratio=None, resolution="standard", cnn_model="inception_v3"):
    """Image-classifier prediction file of a split, (N_all, C) `.npz` (scipy sparse) or `.npy`;
    `pred_type` fewshot: a classifier trained on `ratio` of the training data."""
    prefix = _file_prefix(dataset)
    if pred_type == "fewshot":
        if dataset not in ("inat_2018", "fmow"):
            raise ValueError(f"{dataset}: few-shot image predictions (--cnn_pred_type fewshot) exist only for "
                             f"inat_2018 and fmow; use --cnn_pred_type full")
        if dataset == "fmow":
            return f"fewshot/{prefix}_{split}_preds_ratio{ratio:.3f}.npy"
        folder = "fewshot" if cnn_model == "inception_v3" else f"fewshot-{cnn_model}"
        return f"{folder}/{prefix}_{split}_preds_sparse_ratio{ratio:.3f}.npz"
    if dataset == "fmow":
        return f"feature_moco/{prefix}_{split}_preds.npy"
    if dataset == "yfcc":
        return f"features_inception/{prefix}_{split}_preds.npy"
    folder = "features_inception_hr" if dataset == "inat_2018" and resolution == "high_res" else "features_inception"
    return f"{folder}/{prefix}_{split}_preds_sparse.npz"


# ----------------------------------------------------------------------------------------------------------------
# errors

def _missing_fewshot(dataset, path, split, ratio):
    head, tail = path.name.split(f"ratio{ratio:.3f}")
    pattern = re.compile(re.escape(head) + r"ratio(\d+\.\d+)" + re.escape(tail))
    found = sorted(float(match[1]) for match in map(pattern.fullmatch, (p.name for p in path.parent.glob("*")))
                   if match) if path.parent.is_dir() else []
    there = (f"{path.parent} has them only for --train_sample_ratio {', '.join(f'{r:g}' for r in found)}" if found
             else f"there are no few-shot image predictions in {path.parent} at all")
    return FileNotFoundError(f"{dataset}: no few-shot {split} image predictions for --train_sample_ratio {ratio:g} "
                             f"(--cnn_pred_type fewshot reads {path}): {there}; use --cnn_pred_type full (the fully "
                             f"supervised classifier's predictions)" + (" or one of those ratios" if found else ""))


def _open_json(dataset, path, what):
    if not path.is_file():
        raise missing(dataset, path, what)
    try:
        with open(path) as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise malformed(dataset, path, f"not JSON ({err})") from None


def _column(dataset, path, records, key, dtype):
    try:
        return np.array([r[key] for r in records], dtype=dtype)
    except (KeyError, TypeError, ValueError) as err:
        raise malformed(dataset, path, f"an entry lacks '{key}' or it is not a number ({err!r})") from None


def _repeated(keys):
    uniq, counts = np.unique(keys, return_counts=True)
    return uniq[counts > 1]


def _check_unique_ids(dataset, path, ids, what):
    repeated = _repeated(ids)
    if len(repeated):
        raise malformed(dataset, path, f"{len(repeated)} {what} ids occur more than once, e.g. "
                                       f"{', '.join(map(str, repeated[:5]))}; each image must be listed once")


def _check_consistent(dataset, path, ids, columns, what):
    table = pd.DataFrame({"id": ids, **columns}).drop_duplicates()
    conflicting = _repeated(table["id"].to_numpy())
    if len(conflicting):
        raise malformed(dataset, path, f"{len(conflicting)} image ids have conflicting {what} entries, e.g. "
                                       f"{', '.join(map(str, conflicting[:5]))}; keep one entry per image")


def _lookup(dataset, path, keys, wanted, what):
    """Positions in `keys` of each value of `wanted` (the last where `keys` repeats one)."""
    rev = keys[::-1]
    uniq, first_in_rev = np.unique(rev, return_index=True)
    pos = np.searchsorted(uniq, wanted)
    pos[pos == len(uniq)] = 0
    found = uniq[pos] == wanted if len(uniq) else np.zeros(len(wanted), bool)
    if not found.all():
        raise malformed(dataset, path, f"{(~found).sum()} image ids have no {what}, e.g. id {wanted[~found][0]}")
    return len(keys) - 1 - first_in_rev[pos]


# ----------------------------------------------------------------------------------------------------------------
# per-family readers: all entries of a split, before any row is dropped

@dataclass
class _Entries:
    locs: np.ndarray
    classes: np.ndarray
    users: np.ndarray
    dates: np.ndarray
    invalid: np.ndarray
    imgs: Optional[np.ndarray]
    source: Path
    loc_source: Path  # the file the coordinates come from


def _read_inat_style(dataset, data_dir, split, load_img):
    loc_name, ann_name = annotation_files(dataset, split)
    loc_path, ann_path = data_dir / loc_name, data_dir / ann_name
    ann = _open_json(dataset, ann_path, "annotation file")
    try:
        images, annotations = ann["images"], ann["annotations"]
    except (KeyError, TypeError):
        raise malformed(dataset, ann_path, "expected a dict with 'images' and 'annotations' lists") from None
    img_ids = _column(dataset, ann_path, images, "id", np.int64)
    ann_ids = _column(dataset, ann_path, annotations, "image_id", np.int64)
    ann_classes = _column(dataset, ann_path, annotations, "category_id", np.int64)
    imgs = np.array([im.get("file_name", "") for im in images]) if load_img else None
    del ann, images, annotations
    _check_unique_ids(dataset, ann_path, img_ids, "image")
    _check_consistent(dataset, ann_path, ann_ids, {"category_id": ann_classes}, "annotation")
    classes = ann_classes[_lookup(dataset, ann_path, ann_ids, img_ids, "annotation")]

    loc = _open_json(dataset, loc_path, "location file")
    if not isinstance(loc, list):
        raise malformed(dataset, loc_path, f"expected a list of location entries, got a {type(loc).__name__}")
    loc_ids = _column(dataset, loc_path, loc, "id", np.int64)
    fields = {key: _column(dataset, loc_path, loc, key, np.float64) for key in ("lon", "lat", "user_id", "date_c")}
    del loc
    _check_consistent(dataset, loc_path, loc_ids, fields, "location")
    rows = _lookup(dataset, loc_path, loc_ids, img_ids, "location entry")
    lon, lat, user = fields["lon"][rows], fields["lat"][rows], fields["user_id"][rows]
    dates = fields["date_c"][rows].astype(np.float32)
    invalid = np.isnan(lon) | np.isnan(user)
    lat[np.isnan(lon)] = np.nan
    users = np.where(np.isnan(user), -1, user).astype(np.int64)
    locs = np.stack([lon, lat], axis=1).astype(np.float32)
    return _Entries(locs, classes, users, dates, invalid, imgs, ann_path, loc_path)


def _read_birds(dataset, data_dir, split, meta_type, load_img):
    path = data_dir / BIRD_FILES[dataset]
    data = _open_json(dataset, path, "annotation file")
    if not isinstance(data, dict):
        raise malformed(dataset, path, f"expected a JSON object with one list per split, got a {type(data).__name__}")
    if split not in data or not isinstance(data[split], list):
        splits = [k for k, v in data.items() if isinstance(v, list) and k != "classes"]
        raise ValueError(f"{dataset}: {path} has no split {split!r}; it has {', '.join(splits)} (--eval_split)")
    entries = [e for e in data[split] if e.get("valid_image")]
    del data
    try:
        meta = [e[meta_type] for e in entries]
    except KeyError:
        raise ValueError(f"{dataset}: entries of {path} have no {meta_type!r} metadata "
                         f"(--meta_type orig_meta or ebird_meta)") from None
    lon = _column(dataset, path, meta, "lon", np.float64)
    lat = _column(dataset, path, meta, "lat", np.float64)
    user = _column(dataset, path, meta, "user_id", np.float64)
    dates = _column(dataset, path, meta, "date", np.float64).astype(np.float32)
    classes = _column(dataset, path, entries, "class_id", np.int64)
    imgs = np.array([e.get("im_path", "") for e in entries]) if load_img else None
    invalid = np.isnan(lon) | np.isnan(user) | (user < 0) | np.isnan(dates)
    users = np.where(np.isnan(user), -1, user).astype(np.int64)
    return _Entries(np.stack([lon, lat], axis=1).astype(np.float32), classes, users, dates, invalid, imgs, path,
                    path)


def _read_csv(dataset, path, what, columns, numeric):
    """The table at `path` with `columns` (`numeric` ones as numbers); ValueError naming the file, column
    and first bad row."""
    if not path.is_file():
        raise missing(dataset, path, what)
    try:
        table = pd.read_csv(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as err:
        raise malformed(dataset, path, f"not a CSV table ({err})") from None
    absent = set(columns) - set(table.columns)
    if absent:
        raise malformed(dataset, path, f"missing columns {sorted(absent)} (it has {list(table.columns)})")
    if len(table) == 0:
        raise malformed(dataset, path, "no rows")
    for column in numeric:
        values = pd.to_numeric(table[column], errors="coerce")
        wrong = values.isna() & table[column].notna()
        if wrong.any():
            row = int(np.flatnonzero(wrong.to_numpy())[0])
            raise malformed(dataset, path, f"column '{column}' holds {wrong.sum()} values that are not numbers, "
                                           f"e.g. {table[column].iloc[row]!r} in data row {row + 1}")
        table[column] = values
    return table


def _read_yfcc(data_dir, split):
    path = data_dir / YFCC_FILE
    table = _read_csv("yfcc", path, "split file", ("lon", "lat", "class", "split"), ("lon", "lat", "class"))
    if table["class"].isna().any() or (table["class"] % 1 != 0).any():
        raise malformed("yfcc", path, "column 'class' must hold an integer class id in every row")
    table = table[table["split"] == split]
    if len(table) == 0:
        raise ValueError(f"yfcc: {path} has no rows with split == {split!r} (--eval_split)")
    n = len(table)
    return _Entries(table[["lon", "lat"]].to_numpy(np.float32), table["class"].to_numpy(np.int64),
                    np.full(n, -1, np.int64), np.zeros(n, np.float32), np.zeros(n, bool), None, path, path)


def _read_entries(params, data_dir, split):
    dataset = params["dataset"]
    if dataset in INAT_STYLE:
        return _read_inat_style(dataset, data_dir, split, params["load_img"])
    if dataset in BIRD_FILES:
        return _read_birds(dataset, data_dir, split, params["meta_type"], params["load_img"])
    return _read_yfcc(data_dir, split)


def _read_class_names(dataset, data_dir):
    path = data_dir / category_file(dataset)
    if dataset == "yfcc":
        table = _read_csv(dataset, path, "class-name file", ("id", "name"), ("id",))
        names = dict(zip(table["id"].astype(int), table["name"].astype(str)))
    else:
        names = _class_names_of(dataset, path, _open_json(dataset, path, "class-name file"))
    if not names:
        raise malformed(dataset, path, "it names no classes")
    return names


def _class_names_of(dataset, path, data):
    if dataset == "fmow":
        if not isinstance(data, dict) or not all(isinstance(cid, int) for cid in data.values()):
            raise malformed(dataset, path, f"expected a JSON object {{class name: integer id}}, got a "
                                           f"{type(data).__name__}")
        return {cid: name for name, cid in data.items()}
    if dataset in BIRD_FILES:
        if not isinstance(data, dict) or not isinstance(data.get("classes"), list):
            raise malformed(dataset, path, "expected a JSON object with a 'classes' list of class names")
        return dict(enumerate(data["classes"]))
    if not isinstance(data, list) or not all(isinstance(c, dict) and isinstance(c.get("id"), int) and "name" in c
                                             for c in data):
        raise malformed(dataset, path, "expected a JSON list of {\"id\": integer, \"name\": ...} entries")
    return {c["id"]: c["name"] for c in data}


# ----------------------------------------------------------------------------------------------------------------
# selecting rows

def _bad_coordinates(locs):
    lon, lat = locs[:, 0], locs[:, 1]
    with np.errstate(invalid="ignore"):
        return np.isnan(lon) | np.isnan(lat) | (np.abs(lon) > 180) | (np.abs(lat) > 90)


def _check_not_swapped(dataset, split, entries, located):
    """ValueError when lon and lat look swapped (SWAPPED_MIN_FRACTION of the `located` rows out of range)."""
    as_given = (_bad_coordinates(entries.locs) & located).sum()
    swapped = (_bad_coordinates(entries.locs[:, ::-1]) & located).sum()
    if as_given >= max(1, SWAPPED_MIN_FRACTION * located.sum()) and swapped * 10 < as_given:
        raise malformed(dataset, entries.loc_source,
                        f"{as_given} of its {located.sum()} {split} locations are out of range (lon outside "
                        f"[-180, 180] or lat outside [-90, 90]) but only {swapped} would be with the two exchanged: "
                        f"its 'lon' and 'lat' look swapped (this project reads longitude, latitude in degrees); "
                        f"exchange them in the file")


def _check_longitudes(dataset, split, entries, located):
    """ValueError when the `located` rows' longitudes look like degrees east in 0..360."""
    lon = entries.locs[located, 0]
    east = ((lon > 180) & (lon <= 360) & (np.abs(entries.locs[located, 1]) <= 90)).sum()
    if east >= max(2, SWAPPED_MIN_FRACTION * len(lon)) and not (lon < 0).any():
        raise malformed(dataset, entries.loc_source,
                        f"{east} of its {len(lon)} {split} longitudes are in (180, 360]: they look like degrees "
                        f"east in 0..360, but this project reads longitude in [-180, 180]; convert them in the file "
                        f"(subtract 360 from those above 180)")


def _select(dataset, split, entries, remove_invalid, num_classes):
    bad_class = (entries.classes < 0) | (entries.classes >= num_classes)
    if bad_class.any():
        raise malformed(dataset, entries.source,
                        f"{bad_class.sum()} {split} entries have class ids outside [0, {num_classes}) "
                        f"(e.g. {entries.classes[bad_class][0]}); {category_file(dataset)} names {num_classes} "
                        f"classes")
    located = ~entries.invalid & ~np.isnan(entries.locs).any(axis=1)
    _check_not_swapped(dataset, split, entries, located)
    _check_longitudes(dataset, split, entries, located)
    bad_coords = _bad_coordinates(entries.locs) & ~entries.invalid
    locs = entries.locs
    original_rows = None
    if remove_invalid:
        keep = ~entries.invalid & ~bad_coords
        logger.info("%s %s: %d entries, %d excluded with missing metadata", dataset, split, len(keep),
                    entries.invalid.sum())
        if bad_coords.any():
            logger.warning("%s %s: dropped %d entries with NaN or out-of-range coordinates (lon outside "
                           "[-180, 180] or lat outside [-90, 90]) in %s", dataset, split, bad_coords.sum(),
                           entries.loc_source)
        inds = np.flatnonzero(keep)
        row_of_entry = np.full(len(keep), -1, np.int64)
        row_of_entry[inds] = np.arange(len(inds))
        original_rows = row_of_entry[~entries.invalid]
    else:
        inds = np.arange(len(entries.classes))
        logger.info("%s %s: %d entries, keeping %d without metadata (NaN location)", dataset, split, len(inds),
                    entries.invalid.sum())
        if bad_coords.any():
            logger.warning("%s %s: %d entries with NaN or out-of-range coordinates in %s are kept as unknown "
                           "locations (NaN)", dataset, split, bad_coords.sum(), entries.loc_source)
            locs = locs.copy()
            locs[bad_coords] = np.nan
    if len(inds) == 0:
        raise ValueError(f"{dataset}: no usable {split} entries in {entries.source}")
    imgs = entries.imgs[inds] if entries.imgs is not None else None
    return Split(split, locs[inds], entries.classes[inds], entries.users[inds], entries.dates[inds], inds,
                 np.ones(len(inds), np.int64), imgs, original_rows=original_rows)


def _kaggle_split_ids(dataset, data_dir, split):
    path = data_dir / kaggle_file(dataset)
    if not path.is_file():
        raise missing(dataset, path, "Kaggle solution file (public/private split of --eval_split test)")
    table = pd.read_csv(path)
    column = next((c for c in table.columns if c.lower() == "usage"), None)
    if column is None:
        raise malformed(dataset, path, "no 'usage' column")
    return table[column].to_numpy() == "Private"


# ----------------------------------------------------------------------------------------------------------------

def load_dataset(params, eval_split, train_remove_invalid, eval_remove_invalid, load_cnn_predictions=False,
                 load_cnn_features=False, load_cnn_features_train=False):
    """The `CSPData` of `params['dataset']`: the training split and `eval_split` ('val' or 'test'),
    without invalid entries where `*_remove_invalid`, with the evaluation split's class probabilities and image features
    as asked. Never changes `params`."""
    dataset = params["dataset"]
    if dataset == own_data.DATASET:
        return own_data.load_own_dataset(params, eval_split, train_remove_invalid, eval_remove_invalid,
                                         load_cnn_predictions, load_cnn_features, load_cnn_features_train)
    if dataset in ("inat_2018", "inat_2017") and eval_split not in ("val", "test"):
        raise ValueError(f"{dataset}: --eval_split must be val or test, got {eval_split!r}")
    data_dir = paths.get_paths(data_dir_key(dataset))
    if not data_dir.is_dir():
        raise missing(dataset, data_dir, "data folder")

    classes = _read_class_names(dataset, data_dir)
    num_classes = len(classes)
    splits = []
    for split, remove, want_feats in (("train", train_remove_invalid, load_cnn_features_train),
                                      (eval_split, eval_remove_invalid, load_cnn_features)):
        entries = _read_entries(params, data_dir, split)
        num_all = len(entries.classes)
        part = _select(dataset, split, entries, remove, num_classes)
        rows = None if len(part) == num_all else part.inds
        if split == "test" and dataset in ("inat_2018", "inat_2017"):
            ids = _kaggle_split_ids(dataset, data_dir, split)
            if len(ids) != num_all:
                raise malformed(dataset, data_dir / kaggle_file(dataset),
                                f"{len(ids)} rows; expected {num_all}, one per image of {entries.source.name}")
            part.split_ids = ids[part.inds]
        if want_feats:
            name = feature_file(dataset, split, params["inat2018_resolution"], params["cnn_model"])
            part.feats = read_rows(dataset, data_dir / name, rows, num_all, None, entries.source,
                                   f"{split} image features", storage=params.get("feature_storage", "auto"))
        if load_cnn_predictions and split == eval_split:
            name = prediction_file(dataset, split, params["cnn_pred_type"], params["train_sample_ratio"],
                                   params["inat2018_resolution"], params["cnn_model"])
            if params["cnn_pred_type"] == "fewshot" and not (data_dir / name).is_file():
                raise _missing_fewshot(dataset, data_dir / name, split, params["train_sample_ratio"])
            part.preds = read_rows(dataset, data_dir / name, rows, num_all, num_classes, entries.source,
                                   f"{split} image predictions")
        splits.append(part)
        del entries

    class_of_interest = DATASET_INFO[dataset][1]
    return CSPData(dataset, data_dir, splits[0], splits[1], num_classes, classes,
                   class_of_interest if class_of_interest < num_classes else 0)


def input_files(params, features=False):
    """[(role, path, read by pre-training)] of the existing files that define a run's data."""
    dataset = params["dataset"]
    if dataset == own_data.DATASET:
        found = [(f"--{flag}", Path(params[flag]), flag in ("data_table", "features"))
                 for flag in own_data.INPUT_FLAGS if params.get(flag)]
        if params.get("features"):
            found.append(("--features rows", side_files(params["features"])["rows"], True))
    else:
        data_dir = paths.get_paths(data_dir_key(dataset))
        found = [("class names", data_dir / category_file(dataset), False)]
        for split in ("train", params["eval_split"]):
            if dataset in INAT_STYLE:
                locations, annotations = annotation_files(dataset, split)
                found += [(f"{split} locations", data_dir / locations, split == "train"),
                          (f"{split} annotations", data_dir / annotations, split == "train")]
            else:
                found.append(("annotations", data_dir / (BIRD_FILES.get(dataset) or YFCC_FILE), True))
        found.append((f"{params['eval_split']} image predictions",
                      data_dir / prediction_file(dataset, params["eval_split"], params["cnn_pred_type"],
                                                 params["train_sample_ratio"], params["inat2018_resolution"],
                                                 params["cnn_model"]), False))
        if features:
            found.append(("train image features", data_dir / feature_file(
                dataset, "train", params["inat2018_resolution"], params["cnn_model"]), True))
    return [(role, path, pretraining) for role, path, pretraining in dict.fromkeys(found) if path.is_file()]


def flags_from_data(params, data=None):
    """{flag: value} a run takes from its data (`data`: its loaded `CSPData`, else the table is read), logged (yfcc:
    no users or dates; a table with unlabelled rows: balanced_train_loader F)."""
    if params["dataset"] == "yfcc":
        logger.info("yfcc has no users or dates: use_date_feats and balanced_train_loader set to False")
        return {"use_date_feats": False, "balanced_train_loader": False}
    if params["dataset"] == own_data.DATASET:
        unlabelled = data.unlabelled_rows if data is not None else own_data.count_unlabelled(params)
        switched = own_data.loader_flags(params, unlabelled)
        if switched:
            logger.info("%s: %d unlabelled rows: balanced_train_loader set to False", Path(params["data_table"]),
                        unlabelled)
        return switched
    return {}
