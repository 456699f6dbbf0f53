"""A folder of photos → photo_table.py → extract_features.py → the run script: locations and dates from EXIF tags."""
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from PIL.TiffImagePlugin import IFDRational

from csp import own_data
from csp import photo_table

ROOT = Path(__file__).resolve().parents[1]


def dms(degrees):
    """EXIF's (degrees, minutes, seconds) rationals of |degrees|."""
    whole = int(abs(degrees))
    minutes = int((abs(degrees) - whole) * 60)
    seconds = (abs(degrees) - whole - minutes / 60) * 3600
    return IFDRational(whole, 1), IFDRational(minutes, 1), IFDRational(round(seconds * 1000), 1000)


def save_photo(path, lon=None, lat=None, taken=None, gps=None, colour=(200, 40, 40), size=(48, 36)):
    """A JPEG with GPS tags for (lon, lat) (or the raw GPS IFD `gps`) and DateTimeOriginal `taken`."""
    exif = Image.Exif()
    if lon is not None:
        gps = {1: "N" if lat >= 0 else "S", 2: dms(lat), 3: "E" if lon >= 0 else "W", 4: dms(lon)}
    if gps is not None:
        exif.get_ifd(photo_table.GPS_IFD).update(gps)
    if taken is not None:
        exif.get_ifd(photo_table.EXIF_IFD)[photo_table.DATE_TIME_ORIGINAL] = taken
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, exif=exif, quality=90)


def test_locations_and_dates_come_from_the_exif_tags(tmp_path, caplog):
    photos = tmp_path / "photos"
    save_photo(photos / "berlin.jpg", 13.405, 52.52, "2021:06:30 14:05:00")
    save_photo(photos / "trip" / "sydney.jpg", 151.2093, -33.8688, "2020:01:02 03:04:05")  # S and E
    save_photo(photos / "trip" / "lima.jpg", -77.0428, -12.0464)  # S and W, no date
    save_photo(photos / "no_gps.jpg", taken="2019:12:31 23:59:59")
    save_photo(photos / "zero_date.jpg", -74.006, 40.7128, "0000:00:00 00:00:00")
    with caplog.at_level(logging.INFO):
        photo_table.main([str(photos), "--out", str(tmp_path / "obs.csv")])
    table = pd.read_csv(tmp_path / "obs.csv", keep_default_na=False).set_index("image")
    assert table.index.tolist() == ["photos/berlin.jpg", "photos/no_gps.jpg", "photos/trip/lima.jpg",
                                    "photos/trip/sydney.jpg", "photos/zero_date.jpg"]
    expected = {"berlin": (13.405, 52.52), "trip/sydney": (151.2093, -33.8688), "trip/lima": (-77.0428, -12.0464),
                "zero_date": (-74.006, 40.7128)}
    for name, (lon, lat) in expected.items():
        row = table.loc[f"photos/{name}.jpg"]
        assert (float(row["lon"]), float(row["lat"])) == pytest.approx((lon, lat), abs=1e-6)
    assert table.loc["photos/no_gps.jpg", "lon"] == "" and table.loc["photos/no_gps.jpg", "date"] == "2019-12-31T23:59:59"
    assert table.loc["photos/berlin.jpg", "date"] == "2021-06-30T14:05:00"
    assert table.loc["photos/zero_date.jpg", "date"] == ""
    assert "5 photos, 4 located, 1 no GPS, 1 impossible date" in caplog.text
    obs = own_data.Observations(tmp_path / "obs.csv", label_set=_labels(tmp_path))  # the table the project reads
    assert np.isnan(obs.locs[1]).all() and obs.dates[0] == pytest.approx((180 + 14 / 24 + 5 / 1440) / 365)


def _labels(tmp_path):
    (tmp_path / "labels.txt").write_text("bird\n")
    return tmp_path / "labels.txt"


@pytest.mark.parametrize("gps, why", [
    ({1: "N", 2: dms(95.0), 3: "E", 4: dms(10.0)}, "impossible"),  # latitude beyond the pole
    ({1: "N", 2: (IFDRational(45, 1), IFDRational(75, 1), IFDRational(0, 1)), 3: "E", 4: dms(10.0)}, "impossible"),
    ({1: "N", 2: (IFDRational(45, 0), IFDRational(0, 1), IFDRational(0, 1)), 3: "E", 4: dms(10.0)}, "impossible"),
    ({2: dms(45.0), 3: "E", 4: dms(10.0)}, "incomplete"),  # no N/S
    ({1: "N", 2: dms(45.0)}, "incomplete"),  # no longitude
    ({9: "V", 1: "N", 2: dms(45.0), 3: "E", 4: dms(10.0)}, "void"),  # the receiver had no fix
], ids=["latitude 95", "75 minutes", "zero denominator", "no reference", "no longitude", "void fix"])
def test_missing_or_impossible_gps_values_stay_empty_and_are_counted(tmp_path, gps, why):
    save_photo(tmp_path / "photos" / "a.jpg", gps=gps)
    save_photo(tmp_path / "photos" / "b.jpg", 2.35, 48.86)
    counts = photo_table.write_table(tmp_path / "photos", tmp_path / "obs.csv")
    table = pd.read_csv(tmp_path / "obs.csv")
    assert np.isnan(table.loc[0, ["lon", "lat"]].astype(float)).all() and not table.loc[1, ["lon"]].isna().any()
    assert counts == {"photos": 2, "located": 1, why: 1}


def test_nothing_is_written_into_the_folder_and_no_table_is_overwritten(tmp_path):
    photos = tmp_path / "photos"
    save_photo(photos / "a.jpg", 2.35, 48.86)
    before = sorted(photos.rglob("*"))
    with pytest.raises(ValueError, match="is inside FOLDER .*nothing is written into the photo folder"):
        photo_table.write_table(photos, photos / "sub" / "obs.csv")
    (tmp_path / "obs.csv").write_text("mine\n")
    with pytest.raises(ValueError, match="exists and is kept; give another --out, or --overwrite"):
        photo_table.write_table(photos, tmp_path / "obs.csv")
    assert (tmp_path / "obs.csv").read_text() == "mine\n"
    photo_table.main([str(photos), "--out", str(tmp_path / "obs.csv"), "--overwrite"])
    assert pd.read_csv(tmp_path / "obs.csv")["image"].tolist() == ["photos/a.jpg"]
    photo_table.write_table(photos, tmp_path / "obs.parquet")
    assert pd.read_parquet(tmp_path / "obs.parquet")["lat"].tolist() == pytest.approx([48.86])
    assert sorted(photos.rglob("*")) == before


def test_labels_from_subfolders_and_names_that_are_not_utf8(tmp_path, caplog):
    photos = tmp_path / "photos"
    save_photo(photos / "blue_jay" / "1.jpg", 1.0, 1.0)
    save_photo(photos / "crow" / "deep" / "2.jpg", 2.0, 2.0)
    save_photo(photos / "top.jpg", 3.0, 3.0)
    save_photo(photos / "crow" / "x.jpg", 4.0, 4.0)
    os.rename(photos / "crow" / "x.jpg", os.fsencode(photos / "crow") + b"/caf\xe9.jpg")
    with caplog.at_level(logging.WARNING):
        photo_table.main([str(photos), "--out", str(tmp_path / "obs.csv"), "--labels", "folder"])
    table = pd.read_csv(tmp_path / "obs.csv", keep_default_na=False)
    assert table["label"].tolist() == ["blue_jay", "crow", ""]
    assert "1 file names are not UTF-8 text and are left out (e.g. 'crow/caf\\\\xe9.jpg')" in caplog.text


def draw_geotagged_photos(folder, num, rng, classes=("red", "blue")):
    """`num` JPEGs in one subfolder per class: colour = class, west / east half of the world = class too."""
    colours = {"red": (200, 40, 40), "blue": (40, 40, 200), "green": (40, 200, 40)}
    for i in range(num):
        label = classes[i % len(classes)]
        lon = rng.uniform(-150, -30) if classes.index(label) % 2 == 0 else rng.uniform(30, 150)
        save_photo(folder / label / f"{i:03d}.jpg", lon, rng.uniform(-50, 50), f"2021:{1 + i % 12:02d}:15 12:00:00",
                   colour=tuple(int(c + rng.normal(0, 20)) for c in colours[label]))


def test_a_folder_of_geotagged_jpegs_runs_end_to_end(tmp_path):
    """photo_table.py → extract_features.py → run-fmow-contsoftmax.sh, as the README's own-data section says."""
    draw_geotagged_photos(tmp_path / "my" / "photos", 40, np.random.default_rng(0))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("CSP_TRACEBACK", None)
    my = tmp_path / "my"
    steps = [[sys.executable, "main/photo_table.py", str(my / "photos"), "--out", str(my / "obs.csv"), "--labels",
              "folder"],
             [sys.executable, "main/extract_features.py", "--images", str(my / "obs.csv"), "--out",
              str(my / "feats.npy"), "--image_size", "32", "--num_workers", "0"],
             ["bash", "run-fmow-contsoftmax.sh", "--dataset", "custom", "--data_table", str(my / "obs.csv"),
              "--features", str(my / "feats.npy"), "--model_dir", str(my / "run"), "--num_epochs_unsuper", "2",
              "--num_epochs", "2", "--train_sample_ratio", "1", "--device", "cpu", "--hidden_dim", "32",
              "--num_filts", "16", "--frequency_num", "4"]]
    logs = []
    for step in steps:
        done = subprocess.run(step, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        logs.append(done.stderr)
    assert "40 photos, 40 located" in logs[0] and "40 rows × 1280 features (0 unreadable)" in logs[1]
    assert "Summary: Top-1 (%) on val" in logs[2]
    checkpoints = sorted(p.name for p in (my / "run").glob("*.pth.tar"))
    assert checkpoints and all("_efficientnet_lite0_" in name for name in checkpoints), checkpoints
