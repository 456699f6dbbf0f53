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
import pytest
import torch

from csp import arguments
from csp import paths
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


def _command_line(argv, capsys, monkeypatch):
    """Exit status and stderr of `python train_unsuper.py argv` (the entry point's code, in this process)."""
    monkeypatch.setattr(sys, "argv", ["train_unsuper.py", *argv])
    monkeypatch.delenv("CSP_TRACEBACK", raising=False)
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        arguments.run_command(train_unsuper.main)
    return stop.value.code, capsys.readouterr().err


def _check_case(argv, words, watched, capsys, monkeypatch):
    """Run `argv` through the command line and the Python API; the rule of the module doc holds for both."""
    before = _snapshot(*watched)
    code, err = _command_line(argv, capsys, monkeypatch)
    lines = err.rstrip("\n").split("\n")
    assert code == 2, err
    assert "Traceback" not in err and lines[-1].startswith("train_unsuper.py: error: "), err
    assert err.count("error: ") == 1, err
    assert all(word in lines[-1] for word in words), lines[-1]
    with pytest.raises((ValueError, OSError)) as raised:
        train_unsuper.main(argv, console=False)
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
