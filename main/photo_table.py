"""The table of your photos' locations and dates from their EXIF tags (docs/own-data.md):

    python main/photo_table.py my/photos --out my/obs.csv                  # image, lon, lat, date
    python main/photo_table.py my/photos --out my/obs.csv --labels folder  # + label: each photo's first subfolder

One row per photo: `image` (relative to the table's folder), `lon`, `lat` (degrees, from the GPS tags) and `date`
(ISO, from DateTimeOriginal); empty cells where missing or impossible. Nothing is written into FOLDER.
"""
import argparse
import logging
import math
import os
from datetime import datetime
from pathlib import Path

import pandas as pd
from PIL import Image

if not __package__:  # run as a script (`python photo_table.py`): its folder is imported as the package csp
    __package__ = __import__("as_package").PACKAGE
from . import images
from .arguments import run_command
from . import table_reader
from .table_reader import TABLE_SUFFIXES

logger = logging.getLogger(__name__)

GPS_IFD, EXIF_IFD = 0x8825, 0x8769
GPS_STATUS, LAT_REF, LAT, LON_REF, LON = 9, 1, 2, 3, 4
DATE_TIME_ORIGINAL = 0x9003
EXIF_DATE = "%Y:%m:%d %H:%M:%S"


def _text(value):
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    return str(value).strip("\x00 ").upper() if value is not None else ""


def _degrees(value):
    parts = value if isinstance(value, (tuple, list)) else (value,)
    try:
        numbers = [float(part) for part in parts]
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    if not 1 <= len(numbers) <= 3 or not all(math.isfinite(x) and x >= 0 for x in numbers) \
            or any(x > 60 for x in numbers[1:]):
        return None
    return sum(x / 60 ** k for k, x in enumerate(numbers))


def gps_location(exif):
    """(lon, lat) in degrees from an Image.Exif, or (None, why): 'no GPS', 'void',
    'incomplete' or 'impossible'."""
    gps = exif.get_ifd(GPS_IFD)
    if not gps or (LAT not in gps and LON not in gps):
        return None, "no GPS"
    if _text(gps.get(GPS_STATUS)) == "V":
        return None, "void"
    lat_ref, lon_ref = _text(gps.get(LAT_REF)), _text(gps.get(LON_REF))
    if LAT not in gps or LON not in gps or lat_ref not in ("N", "S") or lon_ref not in ("E", "W"):
        return None, "incomplete"
    lat, lon = _degrees(gps[LAT]), _degrees(gps[LON])
    if lat is None or lon is None or lat > 90 or lon > 180:
        return None, "impossible"
    return (-lon if lon_ref == "W" else lon, -lat if lat_ref == "S" else lat), ""


def date_taken(exif):
    """(DateTimeOriginal as ISO text or '', whether it was impossible)."""
    value = exif.get_ifd(EXIF_IFD).get(DATE_TIME_ORIGINAL)
    if value is None or not _text(value):
        return "", False
    try:
        return datetime.strptime(_text(value)[:19], EXIF_DATE).isoformat(), False
    except ValueError:
        return "", True


def photo_table(folder, out, labels=None):
    """(DataFrame image, lon, lat, date [, label], counts) of the photos below `folder`."""
    folder, out = Path(folder), Path(out)
    files = images.image_files(folder)
    rows, counts, renamed = [], {"photos": 0, "located": 0}, []
    for path in files:
        name, problem = images.file_name_problem(path.relative_to(folder))
        if problem:
            renamed.append(name)
            continue
        row = {"image": Path(os.path.relpath(path, out.parent)).as_posix(), "lon": None, "lat": None, "date": ""}
        if labels == "folder":
            row["label"] = Path(name).parts[0] if len(Path(name).parts) > 1 else ""
        try:
            with Image.open(path) as img:
                exif = img.getexif()
            location, why = gps_location(exif)
            row["date"], bad_date = date_taken(exif)
        except Exception as err:  # noqa: BLE001 (a photo Pillow cannot read stays a row; extraction lists it)
            location, why, bad_date = None, "unreadable", False
            logger.debug("%s: %s", path, err)
        if location is not None:
            row["lon"], row["lat"] = location
        counts["photos"] += 1
        counts["located" if location is not None else why] = counts.get("located" if location is not None else why,
                                                                        0) + 1
        if bad_date:
            counts["impossible date"] = counts.get("impossible date", 0) + 1
        rows.append(row)
    if renamed:
        counts["names not UTF-8 (left out)"] = len(renamed)
        logger.warning("%d file names are not UTF-8 text and are left out (e.g. %r): rename them", len(renamed),
                       renamed[0])
    if not rows:
        raise ValueError(f"{folder}: no photos to list (suffixes {', '.join(images.image_suffixes())})")
    return pd.DataFrame(rows), counts


def write_table(folder, out, labels=None, overwrite=False):
    """Write the photo table of `folder` to `out` (.csv or .parquet, atomically); returns the counts."""
    folder, out = Path(folder), Path(out)
    if not folder.is_dir():
        raise ValueError(f"FOLDER {folder} is not a folder of photos")
    if out.suffix.lower() not in TABLE_SUFFIXES:
        raise ValueError(f"--out {out}: the table must end in .csv or .parquet")
    if out.resolve().is_relative_to(folder.resolve()):
        raise ValueError(f"--out {out} is inside FOLDER {folder}; nothing is written into the photo folder: give an "
                         f"--out outside it (e.g. beside it)")
    if out.exists() and not overwrite:
        raise ValueError(f"--out {out} exists and is kept; give another --out, or --overwrite to replace it")
    table, counts = photo_table(folder, out, labels)
    table_reader.write_table(table, out)
    logger.info("%s: %s", out, ", ".join(f"{count} {what}" for what, count in counts.items()))
    return counts


def make_parser():
    p = argparse.ArgumentParser(description="A table (image, lon, lat, date) of the photos below FOLDER from their "
                                            "EXIF GPS and date tags, for --dataset custom and extract_features.py")
    p.add_argument("folder", metavar="FOLDER", help="the folder of photos (read only; searched recursively)")
    p.add_argument("--out", required=True, help="the table to write (.csv or .parquet), outside FOLDER")
    p.add_argument("--labels", choices=("folder",), default=None,
                   help="folder: add a 'label' column, each photo's first subfolder below FOLDER (empty at the top)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    return p


def main(argv=None):
    logging.basicConfig(level=logging.INFO, format="%(asctime)s - %(levelname)s - %(message)s")
    args = make_parser().parse_args(argv)
    return write_table(args.folder, args.out, args.labels, args.overwrite)


if __name__ == "__main__":
    run_command(main, output_flag="--out")
