"""Images decoded into the picture a viewer shows, with bounded memory; what cannot be decoded is listed."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from csp import backbones
from csp import extract_features
from csp import images

MAIN = Path(__file__).resolve().parents[1] / "main"


def gradient(width=64, height=48):
    """(H, W, 3) uint8: red rises left to right, green top to bottom."""
    x, y = np.meshgrid(np.linspace(0, 255, width), np.linspace(0, 255, height))
    return np.stack([x, y, np.full_like(x, 90)], axis=2).round().astype(np.uint8)


def test_the_exif_orientation_is_applied(tmp_path):
    upright = gradient()
    for orientation, raw in ((6, np.rot90(upright, 1)), (3, np.rot90(upright, 2)), (8, np.rot90(upright, -1))):
        exif = Image.Exif()
        exif[0x0112] = orientation  # the camera held sideways: the raw pixels are rotated, the tag says how
        Image.fromarray(np.ascontiguousarray(raw)).save(tmp_path / "photo.png", exif=exif)
        np.testing.assert_array_equal(np.asarray(images.open_rgb(tmp_path / "photo.png")), upright)


def test_sixteen_bit_and_float_images_are_scaled_not_clipped(tmp_path):
    eight = gradient()[..., 0]
    Image.fromarray(eight.astype(np.uint16) * 257).save(tmp_path / "16bit.png")
    assert Image.open(tmp_path / "16bit.png").mode == "I;16"
    Image.fromarray(eight.astype(np.float32) / 255).save(tmp_path / "float.tif")
    Image.fromarray(eight.astype(np.int32) * 257).save(tmp_path / "int32.tif")
    Image.fromarray(eight.astype(np.float32) * 4 - 100).save(tmp_path / "float_any_range.tif")  # stretched
    for name in ("16bit.png", "float.tif", "int32.tif", "float_any_range.tif"):
        shown = np.asarray(images.open_rgb(tmp_path / name))
        assert shown.shape == (48, 64, 3) and shown.dtype == np.uint8
        np.testing.assert_allclose(shown[..., 1], eight, atol=1, err_msg=name)


def test_palette_alpha_cmyk_and_one_bit_images_become_rgb(tmp_path):
    rgb = Image.fromarray(gradient())
    rgb.convert("P").save(tmp_path / "palette.gif")
    rgb.convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    rgb.convert("1").save(tmp_path / "one_bit.png")
    transparent = Image.new("RGBA", (20, 10), (0, 0, 0, 0))
    transparent.save(tmp_path / "transparent.png")
    Image.new("LA", (20, 10), (0, 0)).save(tmp_path / "transparent_grey.png")
    for name in ("palette.gif", "cmyk.jpg", "one_bit.png"):
        shown = images.open_rgb(tmp_path / name)
        assert shown.mode == "RGB" and shown.size == (64, 48)
    assert np.abs(np.asarray(images.open_rgb(tmp_path / "cmyk.jpg"), float) - gradient()).mean() < 8
    for name in ("transparent.png", "transparent_grey.png"):  # shown over white, as a viewer's page
        assert (np.asarray(images.open_rgb(tmp_path / name)) == 255).all()


def test_a_fifo_and_a_folder_are_not_opened(tmp_path):
    os.mkfifo(tmp_path / "pipe.jpg")
    (tmp_path / "folder.png").mkdir()
    for name, kind in (("pipe.jpg", "a FIFO"), ("folder.png", "a folder")):
        with pytest.raises(ValueError, match=f"is {kind}, not an image file"):
            images.open_rgb(tmp_path / name)


def test_the_pixel_limit_counts_after_the_jpeg_draft(tmp_path):
    Image.fromarray(gradient(800, 600)).save(tmp_path / "big.jpg")
    Image.fromarray(gradient(800, 600)).save(tmp_path / "big.png")
    assert images.open_rgb(tmp_path / "big.jpg", 64, max_pixels=100_000).size == (200, 150)  # decoded at 1/4
    with pytest.raises(ValueError, match="800 x 600 = 480,000 pixels to decode, more than --max_image_pixels"):
        images.open_rgb(tmp_path / "big.png", 64, max_pixels=100_000)
    assert images.open_rgb(tmp_path / "big.png", 64).size == (200, 150)  # box-reduced after decoding


def test_a_thin_image_keeps_the_centre_its_crop_uses(tmp_path):
    pixels = np.zeros((1, 2000, 3), np.uint8)
    pixels[:, 998:1002] = 255
    Image.fromarray(pixels).save(tmp_path / "thin.png")
    shown = images.open_rgb(tmp_path / "thin.png", 224)
    assert shown.size == (4, 1) and (np.asarray(shown) == 255).all()


def test_the_extraction_gives_a_rotated_photo_the_features_of_the_upright_one(tmp_path):
    upright = gradient(96, 64)
    Image.fromarray(upright).save(tmp_path / "upright.jpg", quality=95)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(np.ascontiguousarray(np.rot90(upright, 1))).save(tmp_path / "tagged.jpg", quality=95, exif=exif)
    Image.fromarray(upright).convert("RGB").save(tmp_path / "copy.png")
    done = extract_features.main(["--images", str(tmp_path), "--out", str(tmp_path.parent / "f.npy"),
                                  "--image_size", "32", "--num_workers", "0"])
    feats = np.load(tmp_path.parent / "f.npy")  # rows: copy.png, tagged.jpg, upright.jpg
    assert done["unreadable"] == 0
    cosine = feats[1] @ feats[2] / np.linalg.norm(feats[1]) / np.linalg.norm(feats[2])
    assert cosine > 0.99


DECODE = textwrap.dedent("""
    import resource, sys
    sys.path.insert(0, {main!r})
    import as_package
    import numpy as np, torch
    from csp import backbones, images
    transform, crop, short = backbones.transform("efficientnet_lite0")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    picture = images.open_rgb({path!r}, short)
    x = transform(torch.from_numpy(np.array(picture)).permute(2, 0, 1))
    assert x.shape == (3, crop, crop), x.shape
    print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
""")


def _peak_megabytes(path):
    """Rise of the peak resident memory (MB) of a fresh process while it decodes and transforms `path`."""
    done = subprocess.run([sys.executable, "-c", DECODE.format(main=str(MAIN), path=str(path))], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    return int(done.stdout.split()[-1])


@pytest.mark.parametrize("size", [(1, 20_000), (20_000, 3)], ids=["1 x 20000", "20000 x 3"])
def test_a_tiny_thin_png_takes_little_memory(tmp_path, size):
    Image.new("RGB", size, (10, 200, 30)).save(tmp_path / "thin.png")
    assert (tmp_path / "thin.png").stat().st_size < 1000
    assert _peak_megabytes(tmp_path / "thin.png") < 100  # resized whole: 224 x 4.5 million pixels, 5 GB


def test_a_121_megapixel_jpeg_decodes_at_a_fraction(tmp_path):
    script = (f"from PIL import Image; Image.new('RGB', (11000, 11000), (90, 120, 200)).save("
              f"{str(tmp_path / 'huge.jpg')!r}, quality=50)")
    subprocess.run([sys.executable, "-c", script], check=True, timeout=300)
    assert _peak_megabytes(tmp_path / "huge.jpg") < 150  # the whole picture is 363 MB of RGB


@pytest.mark.parametrize("backbone, mode", [("efficientnet_b0", "bicubic"), ("vit_b_16", "bilinear")])
def test_the_weights_transform_keeps_its_interpolation(backbone, mode):
    from torchvision.transforms import v2
    transform, crop, resize = backbones.transform(backbone, image_size=48)
    picture = torch.from_numpy(gradient(300, 200)).permute(2, 0, 1)
    by_mode = {name: v2.Compose([v2.Resize(48, getattr(v2.InterpolationMode, name.upper()), antialias=True),
                                 v2.CenterCrop(48), v2.ToDtype(torch.float32, scale=True),
                                 v2.Normalize(transform.mean, transform.std)])(picture)
               for name in ("bilinear", "bicubic")}
    other = "bilinear" if mode == "bicubic" else "bicubic"
    torch.testing.assert_close(transform(picture), by_mode[mode])
    assert (transform(picture) - by_mode[other]).abs().max() > 0.01
