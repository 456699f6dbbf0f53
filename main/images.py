"""Image files decoded into the 8-bit RGB picture a viewer shows, with bounded memory: EXIF orientation
applied, 16-bit / 32-bit / float pixels scaled into 0..255, transparency over white, large images decoded at a
reduced size. More than `max_pixels` pixels, or a path that is not a regular file, raises ValueError.
"""
import os
import stat
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

# What Pillow itself treats as a possible decompression bomb; counted after the JPEG draft (`--max_image_pixels`).
MAX_PIXELS = 89_478_485
# Pillow's own check counts the pixels before the draft: `open_rgb` counts after it.
Image.MAX_IMAGE_PIXELS = None
# Pillow formats that are not pictures, or that only identify a file without decoding it
NOT_PICTURES = {"BUFR", "GRIB", "HDF5", "MPEG", "WMF", "EPS", "IPTC"}
# The longest side kept, as a multiple of the shorter side, before resizing
MAX_ASPECT = 4
SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")


def image_suffixes():
    """The file suffixes ('.jpg', '.png', '.tif', ...) of the picture formats this Pillow opens."""
    Image.init()
    return tuple(sorted(suffix for suffix, fmt in Image.registered_extensions().items()
                        if fmt in Image.OPEN and fmt not in NOT_PICTURES))


def image_files(folder):
    """The files below `folder` (recursive, sorted) with a suffix of `image_suffixes`."""
    suffixes = image_suffixes()
    return sorted(path for path in Path(folder).rglob("*") if path.suffix.lower() in suffixes and path.is_file())


def check_regular_file(path):
    """ValueError unless `path` is a regular file (a FIFO would block); OSError when unreachable."""
    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "not a regular file"
        raise ValueError(f"{path} is {kind}, not an image file")


def open_rgb(path, short_side=None, max_pixels=MAX_PIXELS):
    """The image at `path` as upright 8-bit RGB PIL image; with `short_side` S, a large one reduced to a
    shorter side >= 2 S (longer side at most MAX_ASPECT times the shorter)."""
    check_regular_file(path)
    with Image.open(path) as img:
        if short_side:
            img.draft(None, (2 * short_side, 2 * short_side))
        pixels = img.size[0] * img.size[1]
        if pixels > max_pixels:
            raise ValueError(f"{img.size[0]} x {img.size[1]} = {pixels:,} pixels to decode, more than "
                             f"--max_image_pixels {max_pixels:,}; raise it if this image is meant")
        sixteen_bit = img.mode in SIXTEEN_BIT
        img = ImageOps.exif_transpose(_reducible(img))
    if short_side:
        img = _bounded(img, short_side)
    return _rgb8(img, sixteen_bit)


def _reducible(img):
    if img.mode in SIXTEEN_BIT:
        return img.convert("I")
    if img.mode == "P":
        return img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("1", "La"):
        return img.convert("L" if img.mode == "1" else "LA")
    img.load()
    return img


def _bounded(img, short_side):
    width, height = img.size
    short, long = min(width, height), max(width, height)
    if long > MAX_ASPECT * short:
        keep = MAX_ASPECT * short
        offset = (long - keep) // 2
        img = img.crop((offset, 0, offset + keep, height) if width > height else (0, offset, width, offset + keep))
    factor = short // (2 * short_side)
    return img.reduce(factor) if factor >= 2 else img


def _rgb8(img, sixteen_bit=False):
    if img.mode in ("I", "F"):
        return Image.fromarray(_scaled(np.asarray(img), 65535 if sixteen_bit else None)).convert("RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa"):
        white = Image.new("RGBA", img.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, img.convert("RGBA")).convert("RGB")
    return img.convert("RGB")


def _scaled(values, full_scale=None):
    """uint8 of integer or float pixels: 0..`full_scale` to 0..255; floats in [0, 1] × 255, in [0, 255] as
    they are, in [0, 65535] / 257, else min-max stretched; non-finite values 0."""
    if full_scale:
        return np.round(np.asarray(values, np.float64) * (255 / full_scale)).astype(np.uint8)
    is_float = values.dtype.kind == "f"
    values = np.asarray(values, np.float64)
    finite = np.isfinite(values)
    values = np.where(finite, values, 0.0)
    low, high = (values[finite].min(), values[finite].max()) if finite.any() else (0.0, 0.0)
    if is_float and low >= 0 and high <= 1:
        scaled = values * 255
    elif low >= 0 and high <= 255:
        scaled = values
    elif low >= 0 and high <= 65535:
        scaled = values / 257
    else:
        scaled = (values - low) * (255 / (high - low))
    return np.round(scaled).astype(np.uint8)


def file_name_problem(path):
    """(the file name of `path` as text, '' or why it cannot be written as UTF-8)."""
    name = Path(path).as_posix()
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        shown = os.fsencode(name).decode("utf-8", "backslashreplace")
        return shown, f"the file name {shown!r} is not UTF-8 text; rename the file"
    return name, ""
