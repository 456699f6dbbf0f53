"""The feature extraction's files and its resumption: what defines an extraction is recorded and compared, side files
are checked, one extraction writes an --out at a time, and the file system's surprises end in one line."""
import errno
import json
import logging
import os
import shutil
import signal
import warnings

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from csp import arguments
from csp import extract_features
from csp import feature_files
from csp import own_data
from csp.run_lock import RunLock

NUM = 12


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """A folder `imgs/` of NUM small PNGs, its table `obs.csv` beside it, and a finished extraction `done/f.npy`."""
    root = tmp_path_factory.mktemp("extraction")
    (root / "imgs").mkdir()
    rng = np.random.default_rng(0)
    for i in range(NUM):
        Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(root / "imgs" / f"{i:02d}.png")
    pd.DataFrame({"image": [f"imgs/{i:02d}.png" for i in range(NUM)], "lon": np.linspace(-100, 100, NUM),
                  "lat": 0.0, "label": ["a", "b"] * (NUM // 2)}).to_csv(root / "obs.csv", index=False)
    extract(root / "obs.csv", root / "done" / "f.npy")
    return root


def extract(images, out, *flags):
    return extract_features.main(["--images", str(images), "--out", str(out), "--image_size", "32",
                                  "--num_workers", "0", "--batch_size", "4", *flags])


def copy_run(photos, tmp_path):
    """The finished extraction's out in a copy of the whole folder (images, table and features moved together)."""
    shutil.copytree(photos, tmp_path / "copy")
    return tmp_path / "copy" / "done" / "f.npy"


def test_a_finished_extraction_rerun_on_other_images_is_refused(photos, tmp_path):
    out = copy_run(photos, tmp_path)
    photos = tmp_path / "copy"
    assert extract(photos / "obs.csv", out)["rows"] == NUM  # moved together: the same images, nothing to do
    shutil.copytree(photos / "imgs", tmp_path / "elsewhere" / "imgs")
    with pytest.raises(ValueError, match=r"holds the features of other image files: rows 0, 1, .*another "
                                         r"--image_root"):
        extract(photos / "obs.csv", out, "--image_root", str(tmp_path / "elsewhere"))
    changed = tmp_path / "elsewhere" / "imgs" / "05.png"
    Image.new("RGB", (30, 30)).save(changed)  # the same path, other content
    out2 = tmp_path / "second" / "f.npy"
    extract(photos / "obs.csv", out2, "--image_root", str(tmp_path / "elsewhere"))
    Image.new("RGB", (31, 30)).save(changed)
    with pytest.raises(ValueError, match=r"rows 5 .*differ in path, size or modification time"):
        extract(photos / "obs.csv", out2, "--image_root", str(tmp_path / "elsewhere"))


def test_other_settings_are_refused(photos, tmp_path):
    out = copy_run(photos, tmp_path)
    with pytest.raises(ValueError, match=r"other settings \(max_image_pixels differ"):
        extract(tmp_path / "copy" / "obs.csv", out, "--max_image_pixels", "1000")


def _unfinished(photos, tmp_path, rows_done):
    out = copy_run(photos, tmp_path)
    progress = feature_files.side_files(out)["progress"]
    record = json.loads(progress.read_text())
    progress.write_text(json.dumps({**record, "rows_done": rows_done}))
    return out, progress


def test_a_truncated_feature_file_is_not_extended_with_zeros(photos, tmp_path):
    out, _ = _unfinished(photos, tmp_path, 4)
    size = out.stat().st_size
    with open(out, "r+b") as handle:
        handle.truncate(size - 1000)
    with pytest.raises(ValueError, match="the file is truncated or damaged"):
        extract(photos / "obs.csv", out)
    assert out.stat().st_size == size - 1000
    with open(out, "ab") as handle:  # bytes after the array: damaged too
        handle.write(b"\0" * 2000)
    with pytest.raises(ValueError, match="the file is truncated or damaged"):
        extract(photos / "obs.csv", out)


@pytest.mark.parametrize("change, words", [
    (lambda r: {**r, "rows_done": NUM + 5}, f"claims {NUM + 5} of {NUM} rows done"),
    (lambda r: {**r, "num_rows": NUM * 2, "rows_done": NUM * 2}, f"claims {NUM * 2} of {NUM * 2} rows done, but"),
    (lambda r: {**r, "rows_done": -3}, "'rows_done' is -3, not a count"),
    (lambda r: {**r, "rows_done": "7"}, "'rows_done' is '7', not a count"),
    (lambda r: [1, 2], "malformed or of another version"),
], ids=["more rows done than exist", "more rows than the file", "negative", "text", "a list"])
def test_a_progress_file_is_checked_not_believed(photos, tmp_path, change, words):
    out, progress = _unfinished(photos, tmp_path, 4)
    progress.write_text(json.dumps(change(json.loads(progress.read_text()))))
    with pytest.raises(ValueError, match=words):
        extract(photos / "obs.csv", out)
    with pytest.raises(ValueError, match=words):
        own_data.FeatureFile(out, own_data.Observations(photos / "obs.csv"))


def test_two_extractions_into_one_out_the_second_names_the_first(photos, tmp_path):
    out = tmp_path / "f.npy"
    with RunLock(tmp_path, name=".f.npy"):
        with pytest.raises(ValueError, match=rf"--out {out} is in use by another run \(process {os.getpid()} .*two "
                                             rf"extractions into one file would mix their rows"):
            extract(photos / "obs.csv", out)
    assert not out.exists()
    assert extract(photos / "obs.csv", out)["rows"] == NUM  # released: the next one runs


def test_a_fifo_or_folder_in_the_table_is_listed_not_waited_on(photos, tmp_path):
    os.mkfifo(tmp_path / "pipe.jpg")
    (tmp_path / "folder.png").mkdir()
    table = pd.read_csv(photos / "obs.csv")
    table.loc[2, "image"], table.loc[7, "image"] = str(tmp_path / "pipe.jpg"), str(tmp_path / "folder.png")
    table.to_csv(tmp_path / "obs.csv", index=False)
    done = extract(tmp_path / "obs.csv", tmp_path / "f.npy", "--image_root", str(photos))
    report = pd.read_csv(tmp_path / "f.unreadable.csv")
    assert done["unreadable"] == 2 and report["row"].tolist() == [2, 7]
    assert "is a FIFO" in report["error"][0] and "is a folder" in report["error"][1]


def test_a_file_name_that_is_not_utf8_is_named_and_the_rest_extracted(photos, tmp_path):
    folder = tmp_path / "imgs"
    shutil.copytree(photos / "imgs", folder)
    os.rename(folder / "03.png", os.fsencode(folder) + b"/caf\xe9.png")
    os.rename(folder / "04.png", os.fsencode(folder) + b"/\xff\xfe.png")
    done = extract(folder, tmp_path / "f.npy")
    report = pd.read_csv(tmp_path / "f.unreadable.csv")
    assert done["rows"] == NUM and done["unreadable"] == 2
    assert sorted(report["image"]) == ["\\xff\\xfe.png", "caf\\xe9.png"] and "rename the file" in report["error"][0]


def test_a_killed_decoding_worker_is_one_line_and_the_extraction_resumes(photos, tmp_path, monkeypatch):
    import csp.images as decoding
    open_rgb = decoding.open_rgb

    def dying(path, *args):
        if path.name == "09.png" and os.environ.get("CSP_TEST_KILL") == "1":
            os.kill(os.getpid(), signal.SIGKILL)
        return open_rgb(path, *args)

    monkeypatch.setattr(decoding, "open_rgb", dying)
    monkeypatch.setenv("CSP_TEST_KILL", "1")
    out = tmp_path / "f.npy"
    args = ["--images", str(photos / "obs.csv"), "--out", str(out), "--image_size", "32", "--num_workers", "1",
            "--batch_size", "4"]
    monkeypatch.setattr(extract_features.os, "sched_getaffinity", lambda pid: {0, 1})
    with pytest.raises(ValueError) as raised:
        extract_features.main(args)
    message = arguments.describe_error(raised.value)
    assert "\n" not in message and "an image-decoding worker died" in message and "run the same command again" in \
        message
    saved = json.loads(feature_files.side_files(out)["progress"].read_text())["rows_done"]
    assert saved in (0, 4, 8)  # the batches before the one of row 9 that reached the main process
    monkeypatch.setenv("CSP_TEST_KILL", "0")
    assert extract_features.main(args)["unreadable"] == 0
    np.testing.assert_allclose(np.load(out), np.load(photos / "done" / "f.npy"), atol=1e-5)


def test_a_full_disk_at_creation_leaves_nothing(photos, tmp_path, monkeypatch):
    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(extract_features.os, "posix_fallocate", full)
    with pytest.raises(ValueError, match=r"cannot write .*f.npy: the disk is full \(12 x 1280 float32"):
        extract(photos / "obs.csv", tmp_path / "f.npy")
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == []


def test_a_full_disk_while_writing_is_one_line_and_nothing_looks_complete(photos, tmp_path, monkeypatch):
    real = feature_files.write_progress
    calls = []

    def filling(path, settings, rows_done, num_rows):
        calls.append(rows_done)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, settings, rows_done, num_rows)

    monkeypatch.setattr(feature_files, "write_progress", filling)
    monkeypatch.setattr(extract_features, "SAVE_INTERVAL_S", 0.0)
    out = tmp_path / "f.npy"
    with pytest.raises(ValueError, match=r"the disk is full; free space, then run the same command again: it resumes "
                                         r"at row 0"):
        extract(photos / "obs.csv", out)
    with pytest.raises(ValueError, match="the extraction is unfinished"):
        own_data.FeatureFile(out, own_data.Observations(photos / "obs.csv"))
    monkeypatch.setattr(feature_files, "write_progress", real)
    extract(photos / "obs.csv", out)
    np.testing.assert_allclose(np.load(out), np.load(photos / "done" / "f.npy"), atol=1e-5)


def test_workers_are_capped_at_the_cores_available(photos, tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(extract_features.os, "sched_getaffinity", lambda pid: {0})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the DataLoader's warning about more workers than cores
        with caplog.at_level(logging.INFO):
            extract_features.main(["--images", str(photos / "obs.csv"), "--out", str(tmp_path / "f.npy"),
                                   "--image_size", "32", "--num_workers", "4", "--batch_size", "6"])
    assert "--num_workers 4 lowered to the 1 cores" in caplog.text


@pytest.mark.parametrize("change, words", [
    (lambda f: np.savez(f.with_suffix(".npz"), np.zeros((NUM, 4))), "is not a .npy file (a .npz archive)"),
    (lambda f: feature_files.side_files(f)["rows"].write_text("row,file\n"), "no column 'image'"),
    (lambda f: pd.DataFrame({"row": range(NUM), "image": ["imgs/00.png"] * NUM}).to_csv(
        feature_files.side_files(f)["rows"], index=False), "column 'image', rows 0, 1, 2"),
    (lambda f: feature_files.side_files(f)["unreadable"].write_text("row,image,error\nseven,x,y\n"),
     "column 'row', rows 0: not a feature row"),
    (lambda f: feature_files.side_files(f)["unreadable"].write_text("image\n"), "missing column(s) 'row'"),
    (lambda f: feature_files.side_files(f)["progress"].write_text("{oops"), "is malformed: not JSON"),
], ids=["npz features", "rows without image", "repeated ids", "unreadable row not a number",
        "unreadable without row", "progress not JSON"])
def test_bad_side_files_are_one_line(photos, tmp_path, change, words):
    out = copy_run(photos, tmp_path)
    change(out)
    features = out.with_suffix(".npz") if "npz" in words else out
    with pytest.raises(ValueError) as raised:
        own_data.FeatureFile(features, own_data.Observations(photos / "obs.csv"))
    message = arguments.describe_error(raised.value)
    assert "\n" not in message and words in message and str(features) in message, message


def test_a_truncated_or_foreign_file_is_listed_as_unreadable(photos, tmp_path):
    shutil.copytree(photos / "imgs", tmp_path / "imgs")
    Image.new("RGB", (64, 48), (9, 9, 9)).save(tmp_path / "imgs" / "cut.jpg")
    data = (tmp_path / "imgs" / "cut.jpg").read_bytes()
    (tmp_path / "imgs" / "cut.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "imgs" / "notes.png").write_text("not a picture")
    done = extract(tmp_path / "imgs", tmp_path / "f.npy")
    report = pd.read_csv(tmp_path / "f.unreadable.csv").set_index("image")
    assert done["unreadable"] == 2 and "truncated" in report.loc["cut.jpg", "error"].lower()
    assert "cannot identify image file" in report.loc["notes.png", "error"]


def test_own_data_checkpoint_names_carry_the_backbone_of_the_features(photos, tmp_path):
    from csp import checkpoints
    from csp.arguments import parse_flags
    out = copy_run(photos, tmp_path)
    flags = ["--dataset", "custom", "--data_table", str(photos / "obs.csv")]
    names = checkpoints.model_file_names(parse_flags(flags + ["--features", str(out)]))
    assert names[0] is None and "_custom_gridcell_efficientnet_lite0_" in names[1]  # the default loss: none
    progress = feature_files.side_files(out)["progress"]
    record = json.loads(progress.read_text())
    progress.write_text(json.dumps({**record, "settings": {**record["settings"], "backbone": "resnet18"}}))
    assert "_resnet18_" in checkpoints.model_file_names(parse_flags(flags + ["--features", str(out)]))[1]
    progress.unlink()  # features from elsewhere: --cnn_model names them
    assert "_inception_v3_" in checkpoints.model_file_names(parse_flags(flags + ["--features", str(out)]))[1]
    assert "_fmow_gridcell_inception_v3_" in checkpoints.model_file_names(parse_flags(["--dataset", "fmow"]))[1]
