"""Bad flags, data files, checkpoints and folders, each through the command line and through the Python API.

The rule: exit status 2 with the error as one line (the last line of stderr) and no traceback; from Python a
ValueError or OSError with a one-line message; in both cases no results file, checkpoint or data file changed. The
command line runs in this process (`arguments.run_command(train_unsuper.main)` with `sys.argv` set); a few cases
also run as real subprocesses from the repository root.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from csp import arguments
from csp import extract_features
from csp import feature_files
from csp import paths
from csp import photo_table
from csp import train_unsuper
from csp.run_lock import RunLock

ROOT = Path(__file__).resolve().parents[1]
RUN = ("--dataset fmow --inat2018_resolution pretrain --unsuper_loss contsoftmax --do_unsuper_train T "
       "--num_epochs_unsuper 1 --num_epochs 1 --batch_size 64 --device cpu --frequency_num 4 --hidden_dim 16 "
       "--num_filts 8 --train_sample_ratio 0.05 --cnn_pred_type fewshot").split()
RELOAD = ["--load_unsuper_model", "T", "--load_super_model", "T"]
FEATS = "features_inception_pretrain/fmow_train_pretrain_net_feats.npy"
PREDS = "fewshot/fmow_val_preds_ratio0.050.npy"


@pytest.fixture(scope="module")
def base(tmp_path_factory, synthetic_data_dir):
    """(data root, model folder of a finished run): the run's checkpoints, log and results exist."""
    data = synthetic_data_dir("fmow", num_train=300, num_val=80, num_classes=8, feat_dim=16)
    models = tmp_path_factory.mktemp("probe") / "models"
    os.environ["CSP_DATA_DIR"] = str(data)
    try:
        train_unsuper.main(RUN + ["--model_dir", str(models)], console=False)
    finally:
        del os.environ["CSP_DATA_DIR"]
    return data, models


# ---------------------------------------------------------------------------------------------------------------
# the bad inputs: (id, extra flags, change to the data folder / model folder, words the message must hold)

def _edit_json(path, change):
    path.write_text(json.dumps(change(json.loads(path.read_text()))))


def _edit_npy(path, change):
    np.save(path, change(np.load(path)), allow_pickle=True)


def _set(array, index, value):
    array[index] = value
    return array


def _swap(entries):
    return [{**entry, "lon": entry["lat"], "lat": entry["lon"]} for entry in entries]


def _repeat_image(ann):
    ann["images"].append(ann["images"][0])
    return ann


def _conflicting_annotation(ann):
    first = ann["annotations"][0]
    ann["annotations"].append({**first, "id": 10 ** 6, "category_id": (first["category_id"] + 1) % 8})
    return ann


def _conflicting_location(entries):
    return entries + [{**entries[0], "lat": 1.25}]


def _checkpoint(models_dir):
    return next(path for path in models_dir.glob("*.pth.tar") if "UNSUPER" not in path.name)


def _edit_checkpoint(models_dir, change):
    path = _checkpoint(models_dir)
    ckpt = torch.load(path, weights_only=True)
    change(ckpt)
    torch.save(ckpt, path)


def _prefix(ckpt):
    ckpt["state_dict"] = {"module." + key: value for key, value in ckpt["state_dict"].items()}


def _truncate(path):
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])


FLAG_CASES = [
    (["--lr", "nan"], ["--lr", "finite"]),
    (["--lr", "-1"], ["--lr", ">= 0"]),
    (["--weight_decay", "-1"], ["--weight_decay"]),
    (["--seed", "-1"], ["--seed", "[0, 2**63)"]),
    (["--unsuper_lr", "-1"], ["--unsuper_lr"]),
    (["--num_filts", "0"], ["--num_filts", "at least 1"]),
    (["--hidden_dim", "0"], ["--hidden_dim"]),
    (["--num_hidden_layer", "-1"], ["--num_hidden_layer", "at least 0"]),
    (["--min_radius", "2", "--max_radius", "1"], ["--min_radius", "--max_radius"]),
    (["--max_radius", "inf"], ["--max_radius", "finite"]),
    (["--min_radius", "nan"], ["--min_radius"]),
    (["--rand_sample_weight", "nan"], ["--rand_sample_weight"]),
    (["--simcse_weight", "inf"], ["--simcse_weight"]),
    (["--unsuper_temp_inbatch", "0"], ["--unsuper_temp_inbatch", "> 0"]),
    (["--lr_decay", "-0.5"], ["--lr_decay"]),
    (["--frequency_num", "0"], ["--frequency_num"]),
    (["--batch_size", "0"], ["--batch_size"]),
    (["--dropout", "1.5"], ["--dropout", "[0, 1)"]),
    (["--map_range", "0", "0", "-90", "90"], ["--map_range"]),
    (["--train_sample_ratio", "0"], ["--train_sample_ratio"]),
    (["--device", "mps"], ["--device mps", "CPU or a CUDA GPU"]),
    (["--device", "cuda:7"], ["--device cuda:7"]),
    (["--use_layn", "yes"], ["--use_layn must be T or F"]),
    (["--spa_enc_type", "grid_cell"], ["--spa_enc_type 'grid_cell' is unknown"]),
    (["--unsuper_loss", "contsoftmaxx"], ["--unsuper_loss"]),
    (["--spa_enc_net", "sirn"], ["--spa_enc_net", "ffn, siren"]),
    (["--spa_enc_type", "spherical_harmonics", "--legendre_poly_num", "0"], ["--legendre_poly_num", ">= 1"]),
    (["--spa_enc_net", "siren", "--num_hidden_layer", "0"], ["--spa_enc_net siren", "--num_hidden_layer >= 1"]),
    (["--spa_enc_type", "sphere", "--frequency_num", "100000000", "--min_radius", "0.001"],
     ["--frequency_num 100000000", "weights"]),
    (["--spa_enc_type", "tile_ffn", "--min_radius", "0.001"], ["tile_ffn", "--min_radius 0.001"]),
    (["--spa_enc_type", "spheregridmixscale", "--min_radius", "5e-324"], ["--min_radius 5e-324 is too small"]),
    (["--spa_enc_type", "rbf", "--rbf_kernal_size", "1e-300"], ["--rbf_kernal_size 1e-300 is too small"]),
    (["--map_range", "-180", "180", "-90", "90", "5"], ["--map_range needs 4 values"]),
]

DATA_CASES = [  # (name, change of the data folder, words)
    ("object features", lambda d: np.save(d / FEATS, np.array([["x"] * 16] * 300, dtype=object),
                                          allow_pickle=True), [FEATS.split("/")[1], "dtype object"]),
    ("NaN feature row", lambda d: _edit_npy(d / FEATS, lambda a: _set(a, 17, np.nan)),
     [FEATS.split("/")[1], "NaN or infinite", "file rows 17"]),
    ("inf prediction", lambda d: _edit_npy(d / PREDS, lambda a: _set(a, 3, np.inf)),
     ["fmow_val_preds_ratio0.050.npy", "file rows 3"]),
    ("category list", lambda d: (d / "category.json").write_text('["a", "b"]'), ["category.json is malformed"]),
    ("repeated image", lambda d: _edit_json(d / "train.json", _repeat_image),
     ["train.json is malformed", "occur more than once"]),
    ("conflicting annotation", lambda d: _edit_json(d / "train.json", _conflicting_annotation),
     ["train.json is malformed", "conflicting annotation"]),
    ("swapped lon lat", lambda d: _edit_json(d / "train_location.json", _swap),
     ["train_location.json is malformed", "look swapped"]),
    ("conflicting location", lambda d: _edit_json(d / "train_location.json", _conflicting_location),
     ["train_location.json is malformed", "conflicting location"]),
    ("location file not a list", lambda d: (d / "train_location.json").write_text('{"id": 1}'),
     ["train_location.json is malformed", "list"]),
    ("annotation not JSON", lambda d: (d / "val.json").write_text("{oops"), ["val.json is malformed: not JSON"]),
    ("feature rows", lambda d: _edit_npy(d / FEATS, lambda a: a[:-1]), [FEATS.split("/")[1], "shape (299, 16)"]),
    ("truncated features", lambda d: _truncate(d / FEATS), [FEATS.split("/")[1]]),
    ("missing features", lambda d: (d / FEATS).unlink(), [FEATS.split("/")[1], "does not exist"]),
    ("published subset of other data", lambda d: (d / "sample_idx").mkdir() or np.save(
        d / "sample_idx/train_sample_ratio0.050.npy", np.array([3, 10 ** 6])),
     ["train_sample_ratio0.050.npy does not fit", "published subset"]),
    ("published subset not an array", lambda d: (d / "sample_idx").mkdir() or (
        d / "sample_idx/train_sample_ratio0.050.npy").write_bytes(b"not an array"), ["neither a .npy file"]),
]

MODEL_CASES = [  # (name, extra flags, change of the model folder, words)
    ("reload with nerf frequencies", ["--freq_init", "nerf"], None, ["made with other flags", "--freq_init nerf"]),
    ("reload with another seed", ["--seed", "3"], None, ["made with other flags", "--seed 3"]),
    ("reload with fewer epochs", ["--num_epochs", "0"], None, ["more than --num_epochs 0"]),
    ("truncated checkpoint", [], lambda m: _truncate(_checkpoint(m)), ["not a readable CSP checkpoint"]),
    ("state_dict a list", [], lambda m: _edit_checkpoint(m, lambda c: c.update(state_dict=[1])),
     ["is malformed: its state_dict is a list"]),
    ("wrapper prefix", [], lambda m: _edit_checkpoint(m, _prefix), ["prefix 'module.'"]),
    ("checkpoint of other data", [], lambda m: _edit_checkpoint(
        m, lambda c: c["state_dict"].update({"class_emb.weight": torch.zeros(9, 8)})), ["trained on other data"]),
]


# ---------------------------------------------------------------------------------------------------------------
# running a case

def _snapshot(*folders):
    return {path: path.read_bytes() for folder in folders if folder.exists() for path in sorted(folder.rglob("*"))
            if path.is_file() and path.suffix != ".log"}


def _command_line(argv, capsys, monkeypatch, command=train_unsuper):
    """Exit status and stderr of `python {command}.py argv` (the entry point's code, in this process)."""
    name = f"{command.__name__.rpartition('.')[2]}.py"
    monkeypatch.setattr(sys, "argv", [name, *argv])
    monkeypatch.delenv("CSP_TRACEBACK", raising=False)
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        arguments.run_command(command.main)
    return stop.value.code, capsys.readouterr().err


def _check_case(argv, words, watched, capsys, monkeypatch, command=train_unsuper):
    """Run `argv` through the command line and the Python API; the rule of the module doc holds for both."""
    before = _snapshot(*watched)
    code, err = _command_line(argv, capsys, monkeypatch, command)
    lines = err.rstrip("\n").split("\n")
    name = f"{command.__name__.rpartition('.')[2]}.py"
    assert code == 2, err
    assert "Traceback" not in err and lines[-1].startswith(f"{name}: error: "), err
    assert err.count("error: ") == 1, err
    assert all(word in lines[-1] for word in words), lines[-1]
    with pytest.raises((ValueError, OSError)) as raised:
        command.main(argv, console=False) if command is train_unsuper else command.main(argv)
    message = arguments.describe_error(raised.value)
    assert "\n" not in message and all(word in message for word in words), message
    assert _snapshot(*watched) == before


@pytest.mark.parametrize("flags, words", FLAG_CASES, ids=[" ".join(case[0]) for case in FLAG_CASES])
def test_bad_flag_values(base, tmp_path, capsys, monkeypatch, flags, words):
    """Rejected before any data is read and before --model_dir or a log file is made."""
    monkeypatch.setenv("CSP_DATA_DIR", str(tmp_path / "no data read"))
    model_dir = tmp_path / "models"
    _check_case(RUN + ["--model_dir", str(model_dir), *flags], words, [], capsys, monkeypatch)
    assert not model_dir.exists()


@pytest.mark.parametrize("change, words", [case[1:] for case in DATA_CASES], ids=[case[0] for case in DATA_CASES])
def test_bad_data_files(base, tmp_path, capsys, monkeypatch, change, words):
    data, models = tmp_path / "data", tmp_path / "models"
    shutil.copytree(base[0], data)
    shutil.copytree(base[1], models)
    change(data / "fmow")
    monkeypatch.setenv("CSP_DATA_DIR", str(data))
    _check_case(RUN + ["--model_dir", str(models), "--seed", "1"], words, [data, models], capsys, monkeypatch)


@pytest.mark.parametrize("flags, change, words", [case[1:] for case in MODEL_CASES],
                         ids=[case[0] for case in MODEL_CASES])
def test_bad_checkpoints_and_reloads(base, tmp_path, capsys, monkeypatch, flags, change, words):
    models = tmp_path / "models"
    shutil.copytree(base[1], models)
    if change:
        change(models)
    monkeypatch.setenv("CSP_DATA_DIR", str(base[0]))
    _check_case(RUN + RELOAD + ["--model_dir", str(models), *flags], words, [base[0], models], capsys, monkeypatch)


def test_a_folder_in_use_and_a_folder_that_cannot_be_made(base, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CSP_DATA_DIR", str(base[0]))
    models = tmp_path / "models"
    shutil.copytree(base[1], models)
    with RunLock(models):
        _check_case(RUN + ["--model_dir", str(models), "--seed", "2"], ["is in use by another run", str(models)],
                    [base[0], models], capsys, monkeypatch)
    blocker = tmp_path / "a file"
    blocker.write_text("not a folder")
    for model_dir in (blocker / "models", blocker):     # a file in the path, or the folder itself a file
        _check_case(RUN + ["--model_dir", str(model_dir)], ["cannot access", str(blocker), "a file is where a folder"],
                    [base[0], tmp_path], capsys, monkeypatch)


def test_a_full_disk(base, tmp_path, capsys, monkeypatch):
    """The first checkpoint write fails with ENOSPC (no path in the error): one line naming the file."""

    def full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(paths.os, "fsync", full)
    monkeypatch.setenv("CSP_DATA_DIR", str(base[0]))
    models = tmp_path / "models"
    shutil.copytree(base[1], models)
    _check_case(RUN + ["--model_dir", str(models)], ["cannot access", str(models), ".pth.tar", "the disk is full"],
                [base[0], models], capsys, monkeypatch)


def test_the_real_command_line_from_the_repository_root(tmp_path):
    """One case as a real process (the others run the same entry point in this process, to stay fast)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CSP_DATA_DIR": "no_such_folder"}
    env.pop("CSP_TRACEBACK", None)
    done = subprocess.run([sys.executable, "main/train_unsuper.py", *RUN, "--model_dir", str(tmp_path / "m")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    last = done.stderr.rstrip("\n").split("\n")[-1]
    assert last.startswith("train_unsuper.py: error: fmow: data folder ") and "no_such_folder" in last, done.stderr


# ---------------------------------------------------------------------------------------------------------------
# your own photos, tables, features and their side files

OWN_RUN = ("--dataset custom --device cpu --spa_enc_type gridcell --frequency_num 4 --hidden_dim 16 --num_filts 8 "
           "--unsuper_loss contsoftmax --unsuper_lr 0.001 --batch_size 8 --num_epochs_unsuper 1 --num_epochs 1 "
           "--train_sample_ratio 1").split()


@pytest.fixture(scope="module")
def own(tmp_path_factory):
    """(folder, models): `photos/` (geotagged JPEGs in a folder per class), `obs.csv` from photo_table.py,
    `feats.npy` with its side files from extract_features.py, and a finished run on them in `models`."""
    from test_photo_table import draw_geotagged_photos
    root = tmp_path_factory.mktemp("own_probe")
    draw_geotagged_photos(root / "photos", 24, np.random.default_rng(1))
    photo_table.main([str(root / "photos"), "--out", str(root / "obs.csv"), "--labels", "folder"])
    extract_features.main(["--images", str(root / "obs.csv"), "--out", str(root / "feats.npy"), "--image_size", "32",
                           "--num_workers", "0"])
    (root / "labels.txt").write_text("red\nblue\n")
    models = tmp_path_factory.mktemp("own_probe_models") / "models"
    train_unsuper.main(OWN_RUN + ["--data_table", str(root / "obs.csv"), "--features", str(root / "feats.npy"),
                                  "--model_dir", str(models)], console=False)
    return root, models


def _table(d, change, name="obs.csv"):
    table = pd.read_csv(d / "obs.csv", dtype=str, keep_default_na=False)
    change(table)
    table.to_csv(d / name, index=False)


def _write_bytes(path, text, encoding="utf-8"):
    path.write_bytes(text.encode(encoding))


def _side(d, kind):
    return feature_files.side_files(d / "feats.npy")[kind]


def _progress(d, change):
    _edit_json(_side(d, "progress"), change)


def _set_cell(column, row, value):
    def change(table):
        table.loc[row, column] = value
    return change


def _truncate_features(d):
    with open(d / "feats.npy", "r+b") as handle:
        handle.truncate((d / "feats.npy").stat().st_size - 4096)


EXTRACT = ["--images", "{d}/obs.csv", "--out", "{d}/feats.npy", "--image_size", "32", "--num_workers", "0"]
NEW_OUT = ["--images", "{d}/obs.csv", "--out", "{t}/new/f.npy", "--image_size", "32", "--num_workers", "0"]
OWN_TABLE = OWN_RUN + ["--data_table", "{d}/obs.csv", "--features", "{d}/feats.npy", "--model_dir", "{m}"]

OWN_CASES = [  # (name, command, argv, change of the data folder, words)
    ("images missing", "extract", ["--images", "{d}/nothing", "--out", "{t}/f.npy"], None, ["does not exist"]),
    ("images folder empty", "extract", ["--images", "{t}", "--out", "{t}/f.npy"], None, ["no image files"]),
    ("images table without image column", "extract", NEW_OUT + ["--image_column", "photo"], None,
     ["missing column(s) 'photo'"]),
    ("images table with an empty image", "extract", NEW_OUT, lambda d: _table(d, _set_cell("image", 3, "")),
     ["column 'image', rows 3: no image"]),
    ("images table with a repeated image", "extract", NEW_OUT,
     lambda d: _table(d, lambda t: _set_cell("image", 3, t.loc[0, "image"])(t)), ["duplicated image ids in rows 0, 3"]),
    ("images table not UTF-8", "extract", NEW_OUT, lambda d: _write_bytes(d / "obs.csv", "image\ncaf\xe9.jpg\n",
                                                                           "latin-1"),
     ["column 'image', rows 0: not UTF-8 text"]),
    ("images table of another kind", "extract", ["--images", "{d}/labels.txt", "--out", "{t}/f.npy"], None,
     ["a table must be .csv or .parquet"]),
    ("out not npy", "extract", ["--images", "{d}/obs.csv", "--out", "{t}/f.npz"], None, ["must end in .npy"]),
    ("out a file of the user", "extract", ["--images", "{d}/obs.csv", "--out", "{d}/mine.npy"],
     lambda d: np.save(d / "mine.npy", np.zeros(3)), ["exists and is not a feature file in progress"]),
    ("finished, other image root", "extract", EXTRACT + ["--image_root", "{t}"], None,
     ["holds the features of other image files", "another --image_root"]),
    ("finished, other image size", "extract", ["--images", "{d}/obs.csv", "--out", "{d}/feats.npy", "--image_size",
                                               "40"], None, ["other settings (image_size, transform differ"]),
    ("finished, an image changed", "extract", EXTRACT, lambda d: shutil.copy(d / "photos/red/000.jpg",
                                                                             d / "photos/red/002.jpg"),
     ["rows 13 (e.g. 'photos/red/002.jpg')", "differ in path, size or modification time"]),
    ("features truncated", "extract", EXTRACT, _truncate_features, ["truncated or damaged"]),
    ("progress claims more rows", "extract", EXTRACT, lambda d: _progress(d, lambda p: {**p, "rows_done": 99}),
     ["claims 99 of 24 rows done"]),
    ("progress not JSON", "extract", EXTRACT, lambda d: _side(d, "progress").write_text("{oops"),
     ["is malformed: not JSON"]),
    ("progress of another version", "extract", EXTRACT,
     lambda d: _progress(d, lambda p: {**p, "format": "csp-features/1"}), ["malformed or of another version"]),
    ("progress without features", "extract", EXTRACT, lambda d: (d / "feats.npy").unlink(),
     ["exists but", "does not; delete it"]),
    ("rows file without image column", "extract", EXTRACT, lambda d: _side(d, "rows").write_text("row\n0\n"),
     ["no column 'image'"]),
    ("rows file with a repeated id", "extract", EXTRACT,
     lambda d: _side(d, "rows").write_text("row,image\n" + "0,a.jpg\n" * 24), ["repeated image ids"]),
    ("unreadable report malformed", "extract", EXTRACT,
     lambda d: _progress(d, lambda p: {**p, "rows_done": 8}) or _side(d, "unreadable").write_text("oops\n1\n"),
     ["missing column(s) 'row'"]),
    ("weights a text file", "extract", NEW_OUT + ["--backbone", "resnet18", "--weights", "{d}/labels.txt"], None,
     ["is not a torch.save file of a state_dict"]),
    ("weights a pickled model", "extract", NEW_OUT + ["--backbone", "resnet18", "--weights", "{d}/model.pt"],
     lambda d: torch.save(torch.nn.Linear(2, 2), d / "model.pt"), ["holds a pickled model, not a state_dict"]),
    ("weights of another model", "extract", NEW_OUT + ["--backbone", "resnet18", "--weights", "{d}/w.pth"],
     lambda d: torch.save(torch.nn.Linear(2, 2).state_dict(), d / "w.pth"),
     ["does not fit torchvision's resnet18", "missing keys"]),
    ("backbone unknown", "extract", NEW_OUT + ["--backbone", "resnet5O"], None,
     ["is not a torchvision classification model"]),
    ("backbone without weights", "extract", NEW_OUT + ["--backbone", "resnet18"], None, ["needs --weights PATH"]),
    ("weights for lite0", "extract", NEW_OUT + ["--weights", "{d}/labels.txt"], None, ["uses the weights shipped"]),
    ("image size too small", "extract", NEW_OUT + ["--image_size", "8"], None, ["--image_size must be at least 32"]),
    ("pixel limit 0", "extract", NEW_OUT + ["--max_image_pixels", "0"], None, ["--max_image_pixels must be at least"]),
    ("no image readable", "extract", NEW_OUT + ["--image_root", "{t}"], None, ["none of the 24 images could be read"]),
    ("photo folder missing", "photo_table", ["{d}/nothing", "--out", "{t}/obs.csv"], None,
     ["is not a folder of photos"]),
    ("photo table inside the folder", "photo_table", ["{d}/photos", "--out", "{d}/photos/obs.csv"], None,
     ["is inside FOLDER", "nothing is written into the photo folder"]),
    ("photo table exists", "photo_table", ["{d}/photos", "--out", "{d}/obs.csv"], None,
     ["exists and is kept", "--overwrite"]),
    ("photo table of another kind", "photo_table", ["{d}/photos", "--out", "{t}/obs.txt"], None,
     ["must end in .csv or .parquet"]),
    ("photo folder without photos", "photo_table", ["{t}", "--out", "{d}/other.csv"], None, ["no photos to list"]),
    ("labels mixing integers and text", "train", OWN_TABLE, lambda d: _table(
        d, lambda t: t.__setitem__("label", ["1", "--3"] * 12)), ["column 'label', rows 1, 3", "not integers"]),
    ("table not UTF-8", "train", OWN_TABLE,
     lambda d: _write_bytes(d / "obs.csv", (d / "obs.csv").read_text().replace("red", "r\xe9d"), "latin-1"),
     ["obs.csv: column 'image', rows 12", "not UTF-8 text"]),
    ("label set not UTF-8", "train", OWN_TABLE + ["--label_set", "{d}/labels.txt"],
     lambda d: _write_bytes(d / "labels.txt", "red\nbl\xfce\n", "latin-1"), ["lines 2 are not UTF-8 text"]),
    ("label set repeating", "train", OWN_TABLE + ["--label_set", "{d}/labels.txt"],
     lambda d: (d / "labels.txt").write_text("red\nblue\nred\n"), ["repeats 'red'"]),
    ("label set missing", "train", OWN_TABLE + ["--label_set", "{d}/nothing.txt"], None, ["does not exist"]),
    ("lat not a number", "train", OWN_TABLE, lambda d: _table(d, _set_cell("lat", 2, "(1+2j)")),
     ["column 'lat', rows 2: not a number"]),
    ("lat written NA", "train", OWN_TABLE, lambda d: _table(d, _set_cell("lat", 4, "NA")),
     ["column 'lat', rows 4: not a number (e.g. 'NA')"]),
    ("lon boolean", "train", [a.replace("obs.csv", "obs.parquet") for a in OWN_TABLE],
     lambda d: pd.read_csv(d / "obs.csv").assign(lon=lambda t: t["lon"] > 0).to_parquet(d / "obs.parquet"),
     ["obs.parquet: column 'lon'", "not real numbers"]),
    ("date impossible", "train", OWN_TABLE, lambda d: _table(d, _set_cell("date", 5, "2021-13-45")),
     ["column 'date', rows 5: not a date"]),
    ("date fraction beyond the year", "train", OWN_TABLE, lambda d: _table(d, _set_cell("date", 6, "1.5")),
     ["column 'date', rows 6: a number outside [0, 1]"]),
    ("features npz", "train", [a.replace("feats.npy", "feats.npz") for a in OWN_TABLE],
     lambda d: np.savez(d / "feats.npz", np.zeros((24, 4))), ["(a .npz archive)"]),
    ("features truncated", "train", OWN_TABLE, _truncate_features, ["truncated or damaged"]),
    ("rows file without image column", "train", OWN_TABLE, lambda d: _side(d, "rows").write_text("row\n0\n"),
     ["--features", "no column 'image'"]),
    ("rows file with a repeated id", "train", OWN_TABLE,
     lambda d: _side(d, "rows").write_text("row,image\n" + "0,a.jpg\n" * 24), ["--features", "repeated image ids"]),
    ("unreadable report row not a number", "train", OWN_TABLE,
     lambda d: _side(d, "unreadable").write_text("row,image,error\nseven,a,b\n"), ["rows 0: not a feature row"]),
    ("progress not JSON", "train", OWN_TABLE, lambda d: _side(d, "progress").write_text("[1"), ["not JSON"]),
    ("extraction unfinished", "train", OWN_TABLE, lambda d: _progress(d, lambda p: {**p, "rows_done": 8}),
     ["the extraction is unfinished (8 of 24 rows)"]),
    ("progress claims more rows", "train", OWN_TABLE, lambda d: _progress(d, lambda p: {**p, "rows_done": 30}),
     ["claims 30 of 24 rows done"]),
]
COMMANDS = {"extract": extract_features, "photo_table": photo_table, "train": train_unsuper}


@pytest.mark.parametrize("command, argv, change, words", [case[1:] for case in OWN_CASES],
                         ids=[case[0] for case in OWN_CASES])
def test_bad_own_data(own, tmp_path, capsys, monkeypatch, command, argv, change, words):
    data, models = tmp_path / "data", tmp_path / "models"
    shutil.copytree(own[0], data)
    shutil.copytree(own[1], models)
    (tmp_path / "empty").mkdir()
    if change:
        change(data)
    argv = [a.format(d=data, m=models, t=tmp_path / "empty") for a in argv]
    _check_case(argv, words, [data, models], capsys, monkeypatch, COMMANDS[command])


def test_an_extraction_into_an_out_in_use_names_the_first(own, tmp_path, capsys, monkeypatch):
    data = tmp_path / "data"
    shutil.copytree(own[0], data)
    with RunLock(data, name=".feats.npy"):
        _check_case([a.format(d=data) for a in EXTRACT], ["--out", "is in use by another run (process"], [data],
                    capsys, monkeypatch, extract_features)
