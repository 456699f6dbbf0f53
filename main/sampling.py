"""Training rows of each phase: few-shot subsets (`--train_sample_ratio`, `--train_sample_method`
{stratified|random}-{fix|random}) and the class-balanced epoch sampler.

stratified: round-half-even(n_c · ratio), at least 1, per class (the original's rule); random: round(N · ratio).
-fix reuses the bundle's `sample_idx/` file, else one written to `{model_dir}/sample_idx/` for the same data.
"""
import codecs
import hashlib
import json
import logging
import pickle
from pathlib import Path

import numpy as np
import torch

from . import paths

logger = logging.getLogger(__name__)

METHODS = ("stratified-fix", "stratified-random", "random-fix", "random-random")
NPY_MAGIC = b"\x93NUMPY"


def sample_counts(class_counts, ratio):
    """Per-class counts of the stratified subset."""
    counts = np.asarray(class_counts, dtype=np.int64)
    return np.maximum(1, np.rint(counts * float(ratio))).astype(np.int64)


def _check_ratio(ratio):
    if not 0 < ratio < 1:
        raise ValueError(f"--train_sample_ratio must be in (0, 1) for a few-shot subset, got {ratio}")


def stratified_sample_indices(classes, ratio, rng):
    """Sorted int64 indices of a stratified subset of `classes`."""
    _check_ratio(ratio)
    classes = np.asarray(classes)
    order = np.lexsort((rng.random(len(classes)), classes))
    _, start, counts = np.unique(classes[order], return_index=True, return_counts=True)
    rank = np.arange(len(classes)) - np.repeat(start, counts)
    take = rank < np.repeat(sample_counts(counts, ratio), counts)
    return np.sort(order[take]).astype(np.int64)


def random_sample_size(num, ratio):
    """round(num * ratio), at least 1."""
    return max(1, round(num * ratio))


def random_sample_indices(num, ratio, rng):
    """Sorted int64 indices drawn uniformly without replacement."""
    _check_ratio(ratio)
    return np.sort(rng.choice(num, size=random_sample_size(num, ratio), replace=False)).astype(np.int64)


def sample_tag(ratio, method):
    return f"ratio{ratio:.3f}" if method == "stratified-fix" else f"ratio{ratio:.3f}-{method}"


def published_index_file(dataset, meta_type, ratio, method):
    """The bundle's subset file `{data_dir}/sample_idx/…/train_sample_{tag}.npy`."""
    folder = paths.get_paths(f"{dataset}_data_dir") / "sample_idx"
    if dataset == "birdsnap":
        folder = folder / meta_type
    return folder / f"train_sample_{sample_tag(ratio, method)}.npy"


def written_index_file(params):
    """Where a drawn subset goes, under `{model_dir}/sample_idx/`."""
    folder = Path(params["model_dir"]) / "sample_idx" / params["dataset"]
    if params["meta_type"]:
        folder = folder / params["meta_type"]
    return folder / f"train_sample_{sample_tag(params['train_sample_ratio'], params['train_sample_method'])}.npy"


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays and nothing else."""
    _reconstruct = np.zeros(0).__reduce__()[0]
    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): codecs.encode,
    }

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only numpy arrays are allowed")
        return self.ALLOWED[(module, name)]


OWN_FIX = "delete it to draw a new subset"
PUBLISHED_FIX = ("it is the data bundle's published subset: point CSP_DATA_DIR at the bundle it came with, or draw "
                 "a subset into --model_dir with --train_sample_method stratified-random")


def read_index_file(path, fix=OWN_FIX):
    """An index file as int64 (`.npy` or the original's pickle); ValueError advising `fix`."""
    with open(path, "rb") as f:
        if f.read(len(NPY_MAGIC)) == NPY_MAGIC:
            f.seek(0)
            data = np.load(f, allow_pickle=False)
        else:
            f.seek(0)
            try:
                data = _ArrayUnpickler(f).load()
            except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as err:
                raise ValueError(f"{path} is neither a .npy file nor the original's pickled index array: "
                                 f"{err}; {fix}") from None
    if not isinstance(data, np.ndarray) or data.ndim != 1 or not np.issubdtype(data.dtype, np.integer):
        raise ValueError(f"{path} does not hold a 1-D integer index array; {fix}")
    return data.astype(np.int64)


def write_index_file(path, indices, record=None):
    """Write `indices` as int64 `.npy` atomically, after its `record`."""
    if record is not None:
        text = (json.dumps(record, indent=1) + "\n").encode()
        paths.atomic_write(record_file(path), lambda handle: handle.write(text))
    paths.atomic_write(path, lambda handle: np.save(handle, np.asarray(indices, dtype=np.int64), allow_pickle=False))


def record_file(index_file):
    return Path(index_file).with_suffix(".json")


def classes_fingerprint(classes):
    """A short hash of the training class ids, in order."""
    return hashlib.sha256(np.ascontiguousarray(classes, dtype=np.int64).tobytes()).hexdigest()[:16]


def _record(train_classes, ratio, method):
    return {"num_train": len(train_classes), "num_classes": len(np.unique(train_classes)),
            "classes_fingerprint": classes_fingerprint(train_classes), "ratio": float(ratio), "method": method}


def _read_record(path, index_path):
    try:
        record = json.loads(Path(path).read_text())
        return {key: record[key] for key in ("num_train", "num_classes", "classes_fingerprint", "ratio", "method")}
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path} is not a record of what the few-shot subset {index_path} was drawn from ({err}); "
                         f"delete both files to draw a new subset") from None


def _check_record(index_path, record, expected):
    differs = []
    if record["num_train"] != expected["num_train"]:
        differs.append(f"it was drawn from {record['num_train']} training rows, this run has "
                       f"{expected['num_train']} training rows")
    if record["num_classes"] != expected["num_classes"]:
        differs.append(f"other training classes: {record['num_classes']} classes there, "
                       f"{expected['num_classes']} classes here")
    elif not differs and record["classes_fingerprint"] != expected["classes_fingerprint"]:
        differs.append("other training classes: the same numbers of rows and classes, but other class ids per row")
    for key in ("ratio", "method"):
        if record[key] != expected[key]:
            differs.append(f"{key} {record[key]} (this run: {expected[key]})")
    if differs:
        raise ValueError(f"{index_path}: this few-shot subset was drawn for other data ({'; '.join(differs)}); "
                         f"delete it and {record_file(index_path).name} to draw a new subset for this data, or give "
                         f"this run another --model_dir")


def _check_indices(indices, num, path, fix=OWN_FIX):
    if len(indices) == 0 or indices.min() < 0 or indices.max() >= num or len(np.unique(indices)) != len(indices):
        raise ValueError(f"{path} does not fit this training set of {num} samples (indices must be distinct and "
                         f"in [0, {num})): it belongs to other data; {fix}")


def _check_counts(indices, train_classes, ratio, method, path, fix=OWN_FIX):
    if method.startswith("stratified"):
        labels, counts = np.unique(train_classes, return_counts=True)
        taken = np.bincount(np.searchsorted(labels, train_classes[indices]), minlength=len(labels))
        wrong = np.flatnonzero(taken != sample_counts(counts, ratio))
        if len(wrong):
            first = wrong[0]
            logger.warning("%s: its counts per class differ from the stratified rule's for %d of %d classes (class "
                           "%d: %d in the file, %d by the rule); it may have been drawn from other data: if so, "
                           "%s", path, len(wrong), len(labels), labels[first], taken[first],
                           sample_counts(counts[first:first + 1], ratio)[0], fix)
    elif len(indices) != random_sample_size(len(train_classes), ratio):
        logger.warning("%s holds %d indices, the random rule takes %d of these %d training rows; it may have been "
                       "drawn from other data: if so, %s", path, len(indices),
                       random_sample_size(len(train_classes), ratio), len(train_classes), fix)


def _reuse(path, train_classes, expected):
    indices = read_index_file(path)
    record = record_file(path)
    recorded = record.is_file()
    if recorded:
        _check_record(path, _read_record(record, path), expected)
    _check_indices(indices, len(train_classes), path)
    if not recorded:
        _check_counts(indices, train_classes, expected["ratio"], expected["method"], path)
    return indices


def _reuse_published(path, train_classes, original_rows, ratio, method):
    """The training rows the bundle's index file names (translated through `original_rows`)."""
    indices = read_index_file(path, PUBLISHED_FIX)
    _check_indices(indices, len(original_rows), path, PUBLISHED_FIX)
    rows = np.sort(original_rows[indices])
    dropped = int((rows < 0).sum())
    if dropped:
        logger.warning("%s: %d of its %d members are training rows that this project drops (NaN or out-of-range "
                       "coordinates); the subset is the other %d", path, dropped, len(rows), len(rows) - dropped)
        return rows[dropped:]
    _check_counts(rows, train_classes, ratio, method, path, PUBLISHED_FIX)
    return rows


def train_sample_indices(params, train_classes, original_rows=None):
    """(int64 indices, index file path) of the few-shot subset of `train_classes` (1-D)."""
    ratio, method = params["train_sample_ratio"], params["train_sample_method"]
    train_classes = np.asarray(train_classes)
    num = len(train_classes)
    own = written_index_file(params)
    if method.endswith("-fix"):
        published = (published_index_file(params["dataset"], params["meta_type"], ratio, method)
                     if params["dataset"] in paths.DATASETS else None)  # --dataset custom: no bundle
        if original_rows is None:
            original_rows = np.arange(num, dtype=np.int64)
        for path in (published, own):
            if path is not None and path.is_file():
                indices = (_reuse_published(path, train_classes, original_rows, ratio, method) if path == published
                           else _reuse(path, train_classes, _record(train_classes, ratio, method)))
                logger.info("few-shot subset: %d of %d training samples from %s", len(indices), num, path)
                return indices, str(path)
    rng = np.random.default_rng(params["seed"])
    if method.startswith("stratified"):
        indices = stratified_sample_indices(train_classes, ratio, rng)
    else:
        indices = random_sample_indices(num, ratio, rng)
    record = {**_record(train_classes, ratio, method), "seed": params["seed"], "num_selected": len(indices)}
    write_index_file(own, indices, record)
    logger.info("few-shot subset: drew %d of %d training samples (%s, seed %d), saved to %s", len(indices), num,
                method, params["seed"], own)
    return indices, str(own)


def training_rows(params, train, usable, full_baseline=False):
    """(pre-training rows, fine-tuning rows, few-shot index file or None) of `train`, int64 arrays or
    None for all: the `usable` rows, then the usable labelled ones (few-shot subset unless `full_baseline`)."""
    if not usable.all():
        logger.warning("%d training samples have no date: with --use_date_feats T they are not trained on",
                       (~usable).sum())
    labelled = np.flatnonzero(train.classes >= 0)  # --dataset custom: class -1 = unlabelled, pre-training only
    everything = len(labelled) == len(train) and usable.all()
    index_file = None
    if params["train_sample_ratio"] < 1 and full_baseline:
        logger.info("--baseline_full_train T: the %s baseline is fitted on all %d training samples with a label, "
                    "not on the few-shot subset of --train_sample_ratio %g", params["spa_enc_type"],
                    len(labelled), params["train_sample_ratio"])
    elif params["train_sample_ratio"] < 1:
        subset, index_file = train_sample_indices(params, train.classes[labelled], train.original_rows)
        labelled, everything = labelled[subset], False
    return (None if usable.all() else np.flatnonzero(usable), None if everything else labelled[usable[labelled]],
            index_file)


def balanced_epoch_indices(classes, max_per_class, generator):
    """One epoch of the class-balanced sampler: min(n_c, max_per_class) distinct indices per
    class, shuffled; int64 on `classes`' device."""
    device = classes.device
    num = classes.numel()
    keys = torch.rand(num, generator=generator, device=generator.device).to(device)
    order = torch.argsort(keys)
    order = order[torch.argsort(classes[order], stable=True)]
    sorted_classes = classes[order]
    position = torch.arange(num, device=device)
    is_start = torch.ones(num, dtype=torch.bool, device=device)
    is_start[1:] = sorted_classes[1:] != sorted_classes[:-1]
    class_start = torch.cummax(torch.where(is_start, position, 0), dim=0).values
    chosen = order[position - class_start < max_per_class]
    shuffle = torch.randperm(chosen.numel(), generator=generator, device=generator.device).to(device)
    return chosen[shuffle]
