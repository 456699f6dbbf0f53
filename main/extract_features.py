"""Image features for CSP from your own photos: a folder or a table of images → one memory-mapped `.npy`.

    python extract_features.py --images DIR_OR_CSV --backbone inception_v3 --weights inception_v3.pth --out F.npy
    python extract_features.py --images obs.csv --out feats.npy     # efficientnet_lite0: weights ship offline

The feature is the input of the backbone's last linear layer, the images prepared with the preset of torchvision's
default weights for it. Beside `--out x.npy` go `x.rows.csv` (row → image), `x.unreadable.csv` and `x.progress.json`,
from which the same command resumes a killed extraction.
"""
import argparse
import csv
import hashlib
import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torchvision
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

if not __package__:  # run as a script (`python extract_features.py`): its folder is imported as the package csp
    __package__ = __import__("as_package").PACKAGE
from . import efficientnet_lite
from .arguments import resolve_device, run_command
from .paths import atomic_write
from .progress import LoggedBar
from .table_reader import duplicated_rows, format_rows, read_table

logger = logging.getLogger(__name__)

LITE0 = "efficientnet_lite0"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
PROGRESS_FORMAT = "csp-features/1"
SAVE_INTERVAL_S = 30.0
# Settings of torchvision models built without weights that their ImageNet weights need (torchvision sets them
# when it loads its own weights): Inception-v3's weights expect its input re-scaling.
BACKBONE_KWARGS = {"inception_v3": {"transform_input": True, "init_weights": False}}
# EfficientNet-Lite0 (TensorFlow weights) scales pixels as (x − 127) / 128: the same as mean / std on [0, 1].
LITE0_PRESET = {"resize_size": 256, "crop_size": 224,
                "mean": [efficientnet_lite.PIXEL_MEAN / 255] * 3, "std": [efficientnet_lite.PIXEL_STD / 255] * 3}


def side_files(out):
    """{'rows', 'unreadable', 'progress'}: the files beside the feature file `out` (`x.rows.csv`, `x.unreadable.csv`,
    `x.progress.json`)."""
    stem = Path(out).with_suffix("")
    return {"rows": Path(f"{stem}.rows.csv"), "unreadable": Path(f"{stem}.unreadable.csv"),
            "progress": Path(f"{stem}.progress.json")}


# ----------------------------------------------------------------------------------------------------------------
# the images

def list_images(images, image_column="image", image_root=None):
    """(ids, paths): the images of a folder (recursive, sorted; id = relative path) or of a table's `image_column`
    (paths relative to `image_root`, default the table's folder)."""
    source = Path(images)
    if source.is_dir():
        files = sorted(p for p in source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not files:
            raise ValueError(f"--images {source}: no image files ({', '.join(IMAGE_SUFFIXES)}) in this folder")
        return [p.relative_to(source).as_posix() for p in files], files
    if not source.is_file():
        raise FileNotFoundError(f"--images {source} does not exist; give a folder of images or a CSV / Parquet "
                                f"table with an '{image_column}' column")
    table = read_table(source, columns=[image_column])
    if table[image_column].isna().any():
        rows = np.flatnonzero(table[image_column].isna().to_numpy())
        raise ValueError(f"--images {source}: column '{image_column}' is empty in rows {format_rows(rows)}; "
                         f"every row needs an image")
    ids = table[image_column].astype(str).tolist()
    root = Path(image_root) if image_root is not None else source.parent
    return ids, [Path(i) if Path(i).is_absolute() else root / i for i in ids]


class ImageFiles(Dataset):
    """Item i = (i, image tensor (3, S, S) float32, error message or ''); an unreadable image gives zeros."""

    def __init__(self, paths, transform, size):
        self.paths, self.transform, self.size = paths, transform, size

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        try:
            with Image.open(self.paths[i]) as img:
                return i, self.transform(img.convert("RGB")), ""
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
            return i, torch.zeros(3, self.size, self.size), f"{type(err).__name__}: {err}"


# ----------------------------------------------------------------------------------------------------------------
# the backbone

def preset(backbone, image_size=None):
    """(transform, crop size) of a backbone: its torchvision preset (Lite0: resize 256, crop 224), or with `image_size`
    S: shorter side to S, centre crop S."""
    if backbone == LITE0:
        settings = dict(LITE0_PRESET)
    else:
        weights = torchvision.models.get_model_weights(backbone).DEFAULT.transforms()
        settings = {"resize_size": weights.resize_size[0], "crop_size": weights.crop_size[0], "mean": weights.mean,
                    "std": weights.std}
    if image_size is not None:
        settings["resize_size"] = settings["crop_size"] = image_size
    transform = v2.Compose([v2.ToImage(), v2.Resize(settings["resize_size"], antialias=True),
                            v2.CenterCrop(settings["crop_size"]), v2.ToDtype(torch.float32, scale=True),
                            v2.Normalize(settings["mean"], settings["std"])])
    return transform, settings["crop_size"]


def _drop_last_linear(model):
    name = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)][-1]
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, nn.Identity())


def load_backbone(backbone, weights=None):
    """The feature extractor (eval mode, CPU): `efficientnet_lite0`, or torchvision's `backbone` with the state_dict at
    `weights`, its last linear layer removed."""
    if backbone == LITE0:
        if weights is not None:
            raise ValueError("--weights: efficientnet_lite0 uses the weights shipped with its package")
        model = efficientnet_lite.load_pretrained()
        model._fc = nn.Identity()
        return model
    if backbone not in torchvision.models.list_models(module=torchvision.models):
        raise ValueError(f"--backbone {backbone!r} is not a torchvision classification model (e.g. resnet50, "
                         f"inception_v3, efficientnet_b0, convnext_tiny) nor {LITE0}")
    if weights is None:
        raise ValueError(f"--backbone {backbone} needs --weights PATH, a local state_dict (weights are never "
                         f"downloaded); e.g. save torchvision.models.get_model('{backbone}', weights='DEFAULT')"
                         f".state_dict() on a machine with network")
    model = torchvision.models.get_model(backbone, weights=None, **BACKBONE_KWARGS.get(backbone, {}))
    state = _read_state_dict(weights)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise ValueError(f"--weights {weights} does not fit torchvision's {backbone}: {err}") from None
    _drop_last_linear(model)
    return model.eval()


def _read_state_dict(path):
    if not Path(path).is_file():
        raise FileNotFoundError(f"--weights {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, ValueError) as err:
        raise ValueError(f"--weights {path} is not a torch state_dict file: {err}") from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ValueError(f"--weights {path} does not hold a state_dict")
    return state


def _fingerprint(paths_or_ids):
    digest = hashlib.sha256()
    for item in paths_or_ids:
        digest.update(str(item).encode() + b"\0")
    return digest.hexdigest()[:16]


def _weights_signature(weights):
    if weights is None:
        return None
    if not Path(weights).is_file():
        raise FileNotFoundError(f"--weights {weights} does not exist")
    stat = Path(weights).stat()
    return {"path": str(Path(weights).resolve()), "bytes": stat.st_size}


# ----------------------------------------------------------------------------------------------------------------
# the extraction

def _resume_point(out, settings):
    """rows_done of an extraction into `out` with these settings, or None; ValueError when `out` is another file."""
    files = side_files(out)
    if files["progress"].is_file():
        done = json.loads(files["progress"].read_text())
        differs = [key for key in settings if done.get("settings", {}).get(key) != settings[key]]
        if differs:
            raise ValueError(f"--out {out} was started with other settings ({', '.join(differs)} differ; see "
                             f"{files['progress']}); give another --out, or delete {out} and its "
                             f"{', '.join(p.name for p in files.values())} to start again")
        if not out.is_file():
            raise ValueError(f"{files['progress']} exists but {out} does not; delete it to start again")
        return int(done["rows_done"])
    if out.exists():
        raise ValueError(f"--out {out} exists and is not a feature file in progress (no {files['progress'].name}); "
                         f"it is not overwritten: give another --out")
    return None


def _create(out, settings, ids, num_features):
    files = side_files(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"row": np.arange(len(ids)), "image": ids}).to_csv(files["rows"], index=False)
    with open(files["unreadable"], "w", newline="") as handle:
        csv.writer(handle).writerow(["row", "image", "error"])
    features = np.lib.format.open_memmap(out, mode="w+", dtype=np.float32, shape=(len(ids), num_features))
    _write_progress(files["progress"], settings, 0, len(ids))
    return features


def _keep_report_rows(report, rows_done):
    """Drop the report lines of rows ≥ rows_done (they are redone)."""
    table = pd.read_csv(report, dtype={"image": str, "error": str}, keep_default_na=False)
    text = table[table["row"] < rows_done].to_csv(index=False).encode()
    atomic_write(report, lambda handle: handle.write(text))


def _write_progress(path, settings, rows_done, num_rows):
    text = json.dumps({"format": PROGRESS_FORMAT, "settings": settings, "rows_done": rows_done,
                       "num_rows": num_rows}, indent=1).encode()
    atomic_write(path, lambda handle: handle.write(text))


def extract(images, backbone, out, weights=None, image_column="image", image_root=None, image_size=None,
            batch_size=64, num_workers=4, device="auto"):
    """Extract the features of every image of `images` into `out`, resuming a killed extraction of the same settings;
    returns {"rows", "features", "unreadable", "seconds"}. An unreadable image's row is NaN."""
    start_time = time.monotonic()
    out = Path(out)
    if out.suffix != ".npy":
        raise ValueError(f"--out {out}: the feature file must end in .npy")
    for flag, value, least in (("batch_size", batch_size, 1), ("num_workers", num_workers, 0),
                               ("image_size", image_size or 32, 32)):
        if value < least:
            raise ValueError(f"--{flag} must be at least {least}, got {value}")
    ids, paths = list_images(images, image_column, image_root)
    repeated = duplicated_rows(ids)
    if len(repeated):
        raise ValueError(f"--images {images}: duplicated image ids in rows {format_rows(repeated)} (e.g. "
                         f"{ids[repeated[0]]!r}); each image must be listed once")
    transform, size = preset(backbone, image_size)
    dev = resolve_device(device)
    settings = {"images": _fingerprint(ids), "num_rows": len(ids), "backbone": backbone,
                "weights": _weights_signature(weights), "image_size": size, "transform": repr(transform)}
    rows_done = _resume_point(out, settings)
    files = side_files(out)
    if rows_done == len(ids):
        logger.info("%s is complete (%d rows); nothing to do", out, len(ids))
    else:
        model = load_backbone(backbone, weights).to(dev)
        channels_last = dev.type == "cpu"
        if channels_last:  # faster depthwise / grouped convolutions on CPU
            model = model.to(memory_format=torch.channels_last)
        if rows_done is None:
            with torch.inference_mode():
                num_features = model(torch.zeros(2, 3, size, size, device=dev)).shape[1]
            features, rows_done = _create(out, settings, ids, num_features), 0
        else:
            logger.info("Resuming the extraction into %s at row %d of %d", out, rows_done, len(ids))
            features = np.lib.format.open_memmap(out, mode="r+")
            _keep_report_rows(files["unreadable"], rows_done)
        _run(model, ImageFiles(paths, transform, size), ids, features, files, settings, rows_done,
             dict(batch_size=batch_size, num_workers=num_workers, pin_memory=dev.type == "cuda"), dev, channels_last)
        del features
    unreadable = len(pd.read_csv(files["unreadable"]))
    if unreadable == len(ids):
        raise ValueError(f"--images {images}: none of the {len(ids)} images could be read (see {files['unreadable']}"
                         f", e.g. a wrong --image_root); {out} holds no features")
    if unreadable:
        logger.warning("%d of %d images could not be read: their rows are NaN; see %s", unreadable, len(ids),
                       files["unreadable"])
    return {"rows": len(ids), "features": int(np.load(out, mmap_mode="r").shape[1]), "unreadable": unreadable,
            "seconds": time.monotonic() - start_time}


def _run(model, images, ids, features, files, settings, rows_done, loader_args, dev, channels_last):
    loader = DataLoader(torch.utils.data.Subset(images, range(rows_done, len(ids))), **loader_args)
    pending, last_save = [], time.monotonic()
    with torch.inference_mode(), LoggedBar(total=len(ids), initial=rows_done, desc="image features",
                                           unit="img") as bar:
        for rows, batch, errors in loader:
            if channels_last:
                batch = batch.contiguous(memory_format=torch.channels_last)
            feats = model(batch.to(dev, non_blocking=True)).float().cpu().numpy()
            bad = [k for k, e in enumerate(errors) if e]
            feats[bad] = np.nan
            features[int(rows[0]):int(rows[-1]) + 1] = feats
            pending += [(int(rows[k]), ids[int(rows[k])], errors[k]) for k in bad]
            rows_done = int(rows[-1]) + 1
            bar.update(len(rows))
            if rows_done == len(ids) or time.monotonic() - last_save >= SAVE_INTERVAL_S:
                _save(features, files, pending, settings, rows_done, len(ids))
                pending, last_save = [], time.monotonic()


def _save(features, files, pending, settings, rows_done, num_rows):
    features.flush()
    with open(files["unreadable"], "a", newline="") as handle:
        csv.writer(handle).writerows(pending)
        handle.flush()
        os.fsync(handle.fileno())
    _write_progress(files["progress"], settings, rows_done, num_rows)


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
                   help="resize the shorter side to S and centre-crop S x S (default: the backbone's preset)")
    p.add_argument("--batch_size", type=int, default=64, help="images per batch")
    p.add_argument("--num_workers", type=int, default=4, help="image-decoding worker processes (0: in-process)")
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
    run_command(main)
