"""Image features for CSP from your own photos: a folder or a table of images → one memory-mapped `.npy`
(the input of the backbone's last linear layer), with side files from which the same command resumes
(docs/own-data.md).

    python extract_features.py --images DIR_OR_CSV --backbone inception_v3 --weights inception_v3.pth --out F.npy
    python extract_features.py --images obs.csv --out feats.npy     # efficientnet_lite0: weights ship offline
"""
import argparse
import errno
import logging
import os
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

if not __package__:  # run as a script (`python extract_features.py`): its folder is imported as the package csp
    __package__ = __import__("as_package").PACKAGE
from . import backbones
from . import feature_files
from . import images as decoding
from .arguments import resolve_device, run_command
from .backbones import LITE0
from .feature_files import side_files
from .progress import LoggedBar
from .run_lock import RunLock
from .table_reader import duplicated_rows, format_rows, read_table

logger = logging.getLogger(__name__)

SAVE_INTERVAL_S = 30.0
# settings that define an extraction: a feature file is resumed or reused only under equal ones
SETTINGS = ("backbone", "weights", "image_size", "transform", "max_image_pixels", "num_rows")


# ----------------------------------------------------------------------------------------------------------------
# the images

def list_images(source, image_column="image", image_root=None):
    """(ids, paths, problems) of a folder's images (recursive, sorted; id = relative path) or of a table's
    `image_column` (relative to `image_root`); problems[i]: '' or why row i cannot be read."""
    source = Path(source)
    if source.is_dir():
        files = decoding.image_files(source)
        if not files:
            raise ValueError(f"--images {source}: no image files in this folder (suffixes "
                             f"{', '.join(decoding.image_suffixes())})")
        ids, problems = zip(*(decoding.file_name_problem(p.relative_to(source)) for p in files))
        return list(ids), files, list(problems)
    if not source.is_file():
        raise FileNotFoundError(f"--images {source} does not exist; give a folder of images or a CSV / Parquet "
                                f"table with an '{image_column}' column")
    table = read_table(source, columns=[image_column])
    if table[image_column].isna().any():
        rows = np.flatnonzero(table[image_column].isna().to_numpy())
        raise ValueError(f"--images {source}: column '{image_column}', rows {format_rows(rows)}: no image; every row "
                         f"needs one")
    ids = table[image_column].astype(str).tolist()
    root = Path(image_root) if image_root is not None else source.parent
    return ids, [Path(i) if Path(i).is_absolute() else root / i for i in ids], [""] * len(ids)


class ImageFiles(Dataset):
    """Item i = (i, (3, S, S) float32 input, error or ''); an unreadable image gives zeros."""

    def __init__(self, paths, problems, transform, crop_size, short_side, max_pixels):
        self.paths, self.problems, self.transform = paths, problems, transform
        self.crop_size, self.short_side, self.max_pixels = crop_size, short_side, max_pixels

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        if self.problems[i]:
            return i, torch.zeros(3, self.crop_size, self.crop_size), self.problems[i]
        try:
            picture = decoding.open_rgb(self.paths[i], self.short_side, self.max_pixels)
            pixels = torch.from_numpy(np.array(picture)).permute(2, 0, 1)
            return i, self.transform(pixels), ""
        except Exception as err:  # noqa: BLE001 (any image a decoder fails on is listed, not fatal)
            return i, torch.zeros(3, self.crop_size, self.crop_size), " ".join(f"{type(err).__name__}: {err}".split())


# ----------------------------------------------------------------------------------------------------------------
# the extraction

def _check_resumable(out, settings, rows_table):
    """rows_done of an extraction into `out` with these settings, or None;
    ValueError naming what differs."""
    files = side_files(out)
    if not files["progress"].is_file():
        if out.exists():
            raise ValueError(f"--out {out} exists and is not a feature file in progress (no {files['progress'].name}); "
                             f"it is not overwritten: give another --out")
        return None
    if not out.is_file():
        raise ValueError(f"{files['progress']} exists but {out} does not; delete it to extract again")
    done = feature_files.read_progress(files["progress"], out)
    restart = (f"give another --out, or delete {out} and its {', '.join(p.name for p in files.values())} to "
               f"extract again")
    changed = feature_files.changed_rows(feature_files.read_rows(files["rows"], done["num_rows"]), rows_table)
    if len(changed):
        row = changed[0]
        example = (f" (e.g. {rows_table['path'].iloc[row]!r})" if row < len(rows_table) else "")
        raise ValueError(f"--out {out} holds the features of other image files: rows {format_rows(changed)}{example} "
                         f"differ in path, size or modification time from {files['rows'].name} (another "
                         f"--image_root, other images, or changed files); {restart}")
    differs = [key for key in SETTINGS if done["settings"].get(key) != settings[key]]
    if differs:
        raise ValueError(f"--out {out} was extracted with other settings ({', '.join(differs)} differ; see "
                         f"{files['progress']}); {restart}")
    return done["rows_done"]


def _create(out, settings, rows_table, num_features):
    """The new feature file (blocks allocated, so a full disk fails here) and side files."""
    files = side_files(out)
    num_rows = len(rows_table)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        feature_files.write_csv(files["rows"], rows_table)
        feature_files.start_unreadable(files["unreadable"])
        features = np.lib.format.open_memmap(out, mode="w+", dtype=np.float32, shape=(num_rows, num_features))
        if hasattr(os, "posix_fallocate"):  # Linux: the blocks now, so a memory-map write never finds the disk full
            with open(out, "r+b") as handle:
                os.posix_fallocate(handle.fileno(), 0, os.fstat(handle.fileno()).st_size)
        feature_files.write_progress(files["progress"], settings, 0, num_rows)
        return features
    except BaseException as err:
        for path in (out, *files.values()):
            path.unlink(missing_ok=True)
        if isinstance(err, OSError) and err.errno == errno.ENOSPC:
            raise ValueError(f"cannot write {out}: the disk is full ({num_rows} x {num_features} float32 = "
                             f"{num_rows * num_features * 4 / 1e6:,.0f} MB needed); free space or give --out on "
                             f"another disk (nothing was written)") from None
        raise


def extract(images, backbone, out, weights=None, image_column="image", image_root=None, image_size=None,
            batch_size=64, num_workers=4, device="auto", max_image_pixels=decoding.MAX_PIXELS):
    """Extract the features of `images` into `out`, resuming a killed extraction with the same settings;
    returns {"rows", "features", "unreadable", "seconds"}. Unreadable rows are NaN."""
    start_time = time.monotonic()
    out = Path(out)
    if out.suffix != ".npy":
        raise ValueError(f"--out {out}: the feature file must end in .npy")
    for flag, value, least in (("batch_size", batch_size, 1), ("num_workers", num_workers, 0),
                               ("image_size", image_size or 32, 32), ("max_image_pixels", max_image_pixels, 1)):
        if value < least:
            raise ValueError(f"--{flag} must be at least {least}, got {value}")
    ids, paths, problems = list_images(images, image_column, image_root)
    repeated = duplicated_rows(ids)
    if len(repeated):
        raise ValueError(f"--images {images}: duplicated image ids in rows {format_rows(repeated)} (e.g. "
                         f"{ids[repeated[0]]!r}); each image must be listed once")
    digest = None if weights is None else backbones.file_digest(weights)
    transform, crop_size, short_side = backbones.transform(backbone, digest, image_size)
    dev = resolve_device(device)
    rows_table = feature_files.sources_table(ids, paths, out)
    settings = {"backbone": backbone, "weights": digest,
                "image_size": crop_size, "transform": " ".join(repr(transform).split()),
                "max_image_pixels": max_image_pixels, "num_rows": len(ids)}
    files = side_files(out)
    lock = RunLock(out.parent, name=f".{out.name}", what=f"--out {out}",
                   fix="two extractions into one file would mix their rows; wait for it to end, or give this one "
                       "another --out")
    with lock:
        rows_done = _check_resumable(out, settings, rows_table)
        if rows_done == len(ids):
            logger.info("%s is complete (%d rows, the same images and settings); nothing to do", out, len(ids))
        else:
            model = backbones.load(backbone, weights).to(dev)
            channels_last = dev.type == "cpu"
            if channels_last:  # faster depthwise / grouped convolutions on CPU
                model = model.to(memory_format=torch.channels_last)
            if rows_done is None:
                features, rows_done = _create(out, settings, rows_table, _width(model, backbone, crop_size, dev)), 0
            else:
                logger.info("Resuming the extraction into %s at row %d of %d", out, rows_done, len(ids))
                features = np.lib.format.open_memmap(out, mode="r+")
                feature_files.keep_unreadable(files["unreadable"], rows_done, len(ids))
            workers = min(num_workers, _cores())
            if workers < num_workers:
                logger.info("--num_workers %d lowered to the %d cores this process may use", num_workers, workers)
            dataset = ImageFiles(paths, problems, transform, crop_size, short_side, max_image_pixels)
            _run(model, dataset, ids, features, files, settings, rows_done,
                 dict(batch_size=batch_size, num_workers=workers, pin_memory=dev.type == "cuda"), dev, channels_last)
            del features
        unreadable = len(feature_files.read_unreadable(files["unreadable"], len(ids)))
    if unreadable == len(ids):
        raise ValueError(f"--images {images}: none of the {len(ids)} images could be read (see {files['unreadable']}"
                         f", e.g. a wrong --image_root); {out} holds no features")
    if unreadable:
        logger.warning("%d of %d images could not be read: their rows are NaN; see %s", unreadable, len(ids),
                       files["unreadable"])
    return {"rows": len(ids), "features": int(feature_files.feature_shape(out)[1]), "unreadable": unreadable,
            "seconds": time.monotonic() - start_time}


def _cores():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _width(model, backbone, crop_size, dev):
    try:
        with torch.inference_mode():
            return model(torch.zeros(2, 3, crop_size, crop_size, device=dev)).shape[1]
    except (RuntimeError, AssertionError, ValueError) as err:
        raise ValueError(f"--image_size {crop_size} does not suit --backbone {backbone} "
                         f"({str(err).splitlines()[0][:100]}); leave --image_size out to use its preset") from None


def _run(model, images, ids, features, files, settings, rows_done, loader_args, dev, channels_last):
    loader = DataLoader(torch.utils.data.Subset(images, range(rows_done, len(ids))), **loader_args)
    batches = iter(loader)
    state = {"rows_done": rows_done, "pending": [], "saved": rows_done}
    died = None
    try:
        _batches(model, batches, ids, features, files, settings, state, dev, channels_last)
    except (RuntimeError, ConnectionError, EOFError) as err:  # where the loop is when it learns of a worker's death
        if not _worker_death(err, loader):
            raise
        died = str(err).splitlines()[0] or type(err).__name__
    finally:
        _stop_workers(batches)
    if died:
        _save(features, files, state["pending"], settings, state["rows_done"], len(ids), state["saved"])
        raise ValueError(f"an image-decoding worker died ({died}; out of memory?); the {state['rows_done']} rows "
                         f"before it are saved: run the same command again to resume (or lower --num_workers, "
                         f"--batch_size or --max_image_pixels)")


def _worker_death(err, loader):
    return loader.num_workers > 0 and (not isinstance(err, RuntimeError) or "DataLoader worker" in str(err))


def _stop_workers(batches):
    """Shut the loader's workers down (a dead worker's signal may still interrupt once)."""
    for _ in range(3):
        try:
            getattr(batches, "_shutdown_workers", lambda: None)()
            return
        except RuntimeError as err:
            if "DataLoader worker" not in str(err):
                raise


def _batches(model, batches, ids, features, files, settings, state, dev, channels_last):
    last_save = time.monotonic()
    with torch.inference_mode(), LoggedBar(total=len(ids), initial=state["rows_done"], desc="image features",
                                           unit="img") as bar:
        for rows, batch, errors in batches:
            if channels_last:
                batch = batch.contiguous(memory_format=torch.channels_last)
            feats = model(batch.to(dev, non_blocking=True)).float().cpu().numpy()
            bad = [k for k, e in enumerate(errors) if e]
            feats[bad] = np.nan
            features[int(rows[0]):int(rows[-1]) + 1] = feats
            state["pending"] += [(int(rows[k]), ids[int(rows[k])], errors[k]) for k in bad]
            state["rows_done"] = int(rows[-1]) + 1
            bar.update(len(rows))
            if state["rows_done"] == len(ids) or time.monotonic() - last_save >= SAVE_INTERVAL_S:
                _save(features, files, state["pending"], settings, state["rows_done"], len(ids), state["saved"])
                state["pending"], state["saved"], last_save = [], state["rows_done"], time.monotonic()


def _save(features, files, pending, settings, rows_done, num_rows, saved):
    """Flush the features, append the unreadable rows, then record rows_done."""
    try:
        features.flush()
        feature_files.append_unreadable(files["unreadable"], pending)
        feature_files.write_progress(files["progress"], settings, rows_done, num_rows)
    except OSError as err:
        if err.errno != errno.ENOSPC:
            raise
        raise ValueError(f"cannot write {err.filename or files['progress'].parent}: the disk is full; free space, "
                         f"then run the same command again: it resumes at row {saved}") from None


def make_parser():
    p = argparse.ArgumentParser(description="Extract image features for CSP from a folder or a table of images "
                                            "into a memory-mapped .npy (resumable; unreadable images reported)")
    p.add_argument("--images", required=True, help="a folder of images, or a CSV / Parquet table with an image column")
    p.add_argument("--backbone", default=LITE0,
                   help=f"torchvision model name (resnet50, inception_v3, ...; needs --weights) or {LITE0}")
    p.add_argument("--weights", default=None, help="local state_dict file of the torchvision backbone")
    p.add_argument("--out", required=True, help="the feature file to write (.npy); side files go beside it")
    p.add_argument("--image_column", default="image", help="the table's column of image paths")
    p.add_argument("--image_root", default=None, help="folder the table's relative paths start from "
                                                      "(default: the table's folder)")
    p.add_argument("--image_size", type=int, default=None,
                   help="resize the shorter side to S and centre-crop S x S (default: the weights' preset)")
    p.add_argument("--max_image_pixels", type=int, default=decoding.MAX_PIXELS,
                   help="an image with more pixels to decode (after JPEG's reduced decoding) is listed as unreadable")
    p.add_argument("--batch_size", type=int, default=64, help="images per batch")
    p.add_argument("--num_workers", type=int, default=4, help="image-decoding worker processes (0: in-process; at "
                                                              "most the cores available)")
    p.add_argument("--device", default="auto", help="torch device; auto = first GPU if present, else CPU")
    return p


def main(argv=None):
    logging.basicConfig(level=logging.INFO, format="%(asctime)s - %(levelname)s - %(message)s")
    args = make_parser().parse_args(argv)
    done = extract(**vars(args))
    logger.info("%s: %d rows × %d features (%d unreadable) in %.1f s", args.out, done["rows"], done["features"],
                done["unreadable"], done["seconds"])
    return done


if __name__ == "__main__":
    run_command(main, output_flag="--out")
