"""Bad flags, data files, checkpoints and folders, each through the command line and through the Python API.

The rule: exit status 2 with the error as one line (the last line of stderr) and no traceback; from Python a
ValueError or OSError with a one-line message; in both cases no file of an earlier run (results, checkpoints, log,
drawn splits, lock) and no data file changed. The command line runs in this process (`arguments.run_command(main)`
with `sys.argv` set); a few cases also run as real subprocesses from the repository root. The cases: flags, the
bundle's files, checkpoints and resumed runs (also on data changed since), your own data resumed, tables.py and
plots.py, and the Python API's location encoder.
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
from csp import models
from csp import paths
from csp import photo_table
from csp import plots
from csp import tables
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


def _east_of_greenwich(entries):
    return [{**entry, "lon": entry["lon"] % 360 if entry["lon"] is not None else None} for entry in entries]


def _conflicting_location(entries):
    return entries + [{**entries[0], "lat": 1.25}]


def _checkpoint(models_dir):
    return next(path for path in models_dir.glob("*.pth.tar") if "UNSUPER" not in path.name)


def _edit_checkpoint(models_dir, change):
    path = _checkpoint(models_dir)
    ckpt = torch.load(path, weights_only=True)
    change(ckpt)
    torch.save(ckpt, path)


def _edit_params(models_dir, **values):
    _edit_checkpoint(models_dir, lambda ckpt: ckpt["params"].update(values))


def _move_first(entries):
    return [{**entries[0], "lat": entries[0]["lat"] / 2}] + entries[1:]


def _relabel_first(ann):
    first = ann["annotations"][0]
    ann["annotations"][0] = {**first, "category_id": (first["category_id"] + 1) % 8}
    return ann


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
    (["--train_sample_rat", "0.1"], ["--train_sample_rat 0.1: not a flag of train_unsuper.py"]),  # an abbreviation
    (["--lr_dec=0.5"], ["--lr_dec=0.5: not a flag"]),
    (["--mask_duplicate_negatives", "yes"], ["--mask_duplicate_negatives must be T or F"]),
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
    ("train longitudes in 0..360", lambda d: _edit_json(d / "train_location.json", _east_of_greenwich),
     ["train_location.json is malformed", "train longitudes are in (180, 360]", "subtract 360"]),
    ("val longitudes in 0..360", lambda d: _edit_json(d / "val_location.json", _east_of_greenwich),
     ["val_location.json is malformed", "val longitudes are in (180, 360]"]),
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
    ("spa_enc_type a list", [], lambda m: _edit_params(m, spa_enc_type=["gridcell"]),
     ["is malformed: its params' spa_enc_type is ['gridcell'], not the name of an encoder"]),
    ("num_classes 1e9", [], lambda m: _edit_params(m, num_classes=1e9),
     ["num_classes is 1000000000.0, not an integer"]),
    ("num_classes negative", [], lambda m: _edit_params(m, num_classes=-8), ["num_classes is -8"]),
    ("num_classes not the weights'", [], lambda m: _edit_params(m, num_classes=10 ** 9),
     ["num_classes is 1000000000, but its weights hold 8"]),
    ("map_range empty", [], lambda m: _edit_params(m, map_range=[]), ["map_range is [], not the extent"]),
    ("map_range degenerate", [], lambda m: _edit_params(m, map_range=[5, 5, -90, 90]),
     ["map_range is [5, 5, -90, 90]"]),
    ("anchor ids not ids", [], lambda m: _edit_params(m, rbf_anchor_pt_ids=["x"]), ["rbf_anchor_pt_ids is not a list"]),
    ("class_names of the wrong length", [], lambda m: _edit_checkpoint(m, lambda c: c.update(class_names=["a"])),
     ["its class_names names 1 classes, but its class head has 8"]),
    ("class_names of other classes", [], lambda m: _edit_checkpoint(
        m, lambda c: c.update(class_names=c["class_names"][::-1])), ["was trained on other data (class 0 is "]),
    ("data record of other files", [], lambda m: _edit_checkpoint(
        m, lambda c: c["data"]["val annotations"].update(fingerprint="0" * 16)),
     ["was trained on other data (val annotations", "val.json has changed since (other content)",
      "--load_super_model F to train anew"]),
    ("data record malformed", [], lambda m: _edit_checkpoint(m, lambda c: c.update(data=["train.json"])),
     ["its data is not a record of the files it was trained on"]),
    ("world_size malformed", [], lambda m: _edit_checkpoint(m, lambda c: c.update(world_size="2")),
     ["its world_size is '2', not a number of processes"]),
    ("written by two processes, continued by one", ["--num_epochs", "2"],
     lambda m: _edit_checkpoint(m, lambda c: c.update(world_size=2)),
     ["was written by 2 process(es) after 1 of 2 fine-tuning epochs", "torchrun --nproc_per_node 2"]),
    ("epoch negative", [], lambda m: _edit_checkpoint(m, lambda c: c.update(epoch=-1)), ["its epoch is -1"]),
]

RESUME_CASES = [  # (name, change of the data folder since the run, words): resumed with --load_* T, from a copy
    ("class ids renamed", lambda d: _edit_json(d / "category.json", lambda c: {
        name: (1 - cid if cid < 2 else cid) for name, cid in c.items()}),
     ["class names is ", "category.json when it was trained (other content)", "class 0 is "]),
    ("val predictions replaced", lambda d: _edit_npy(d / PREDS, lambda a: a[::-1]),
     ["val image predictions is ", "fmow_val_preds_ratio0.050.npy when it was trained (other content)"]),
    ("a training location moved", lambda d: _edit_json(d / "train_location.json", _move_first),
     ["train locations is ", "train_location.json when it was trained"]),
    ("training features replaced", lambda d: _edit_npy(d / FEATS, lambda a: a + 1),
     ["train image features is ", "(other content)"]),
    ("a val label changed", lambda d: _edit_json(d / "val.json", _relabel_first),
     ["val annotations is ", "val.json when it was trained"]),
]


# ---------------------------------------------------------------------------------------------------------------
# running a case

def _snapshot(*folders, logs=True):
    """{path: bytes} of every file under `folders` (hidden ones too: a lock left behind shows); `logs` False leaves
    out the logs (a run that stops after its set-up appends to its own)."""
    return {path: path.read_bytes() for folder in folders if folder.exists() for path in sorted(folder.rglob("*"))
            if path.is_file() and (logs or path.suffix != ".log")}


def _command_line(main, argv, capsys, monkeypatch, program="train_unsuper.py"):
    """Exit status and stderr of `python {program} argv` (the entry point's code `main`, in this process)."""
    monkeypatch.setattr(sys, "argv", [program, *argv])
    monkeypatch.delenv("CSP_TRACEBACK", raising=False)
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        arguments.run_command(main)
    return stop.value.code, capsys.readouterr().err


def _check_command(main, program, argv, words, watched, capsys, monkeypatch, logs=True):
    """Run `argv` through `program`'s command line and its `main(argv)`; the rule of the module doc holds for both."""
    before = _snapshot(*watched, logs=logs)
    code, err = _command_line(main, argv, capsys, monkeypatch, program)
    lines = err.rstrip("\n").split("\n")
    assert code == 2, err
    assert "Traceback" not in err and lines[-1].startswith(f"{program}: error: "), err
    assert err.count("error: ") == 1, err
    assert all(word in lines[-1] for word in words), lines[-1]
    with pytest.raises((ValueError, OSError)) as raised:
        main(argv)
    message = arguments.describe_error(raised.value)
    assert "\n" not in message and all(word in message for word in words), message
    assert _snapshot(*watched, logs=logs) == before


def _check_case(argv, words, watched, capsys, monkeypatch, logs=True):
    _check_command(train_unsuper.main, "train_unsuper.py", argv, words, watched, capsys, monkeypatch, logs)


@pytest.mark.parametrize("flags, words", FLAG_CASES, ids=[" ".join(case[0]) for case in FLAG_CASES])
def test_bad_flag_values(base, tmp_path, capsys, monkeypatch, flags, words):
    """Rejected before any data is read and before --model_dir or a log file is made."""
    monkeypatch.setenv("CSP_DATA_DIR", str(tmp_path / "no data read"))
    model_dir = tmp_path / "models"
    _check_case(RUN + ["--model_dir", str(model_dir), *flags], words, [], capsys, monkeypatch)
    assert not model_dir.exists()


CHANGED_DATA = ([(change, ["--seed", "1"], words) for _, change, words in DATA_CASES]
                + [(change, RELOAD, ["was trained on other data", *words]) for _, change, words in RESUME_CASES])


@pytest.mark.parametrize("change, flags, words", CHANGED_DATA,
                         ids=[case[0] for case in DATA_CASES] + [f"resumed: {case[0]}" for case in RESUME_CASES])
def test_bad_data_files(base, tmp_path, capsys, monkeypatch, change, flags, words):
    """A new run (another --seed) on bad data files; a resumed one (--load_* T) on data changed since: the old model
    was scored under the new data, exit 0."""
    data, models = tmp_path / "data", tmp_path / "models"
    shutil.copytree(base[0], data)
    shutil.copytree(base[1], models)
    change(data / "fmow")
    monkeypatch.setenv("CSP_DATA_DIR", str(data))
    _check_case(RUN + ["--model_dir", str(models), *flags], words, [data, models], capsys, monkeypatch)


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


@pytest.mark.parametrize("full_file, words", [(".pth.tar", [".pth.tar"]), (".results.json", [".results.json"]),
                                              (".ranks.npz", [".ranks.npz"])])
def test_a_full_disk(base, tmp_path, capsys, monkeypatch, full_file, words):
    """A checkpoint, results or ranks write fails with ENOSPC (no path in the error): one line naming the file, and
    the earlier run's file of that kind intact (the run's own log has its lines; the files written before the
    failing one are this run's)."""
    real_fsync = os.fsync

    def full(fd):
        if full_file + "." in os.readlink(f"/proc/self/fd/{fd}"):  # the temporary file of an atomic write
            raise OSError(28, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(paths.os, "fsync", full)
    monkeypatch.setenv("CSP_DATA_DIR", str(base[0]))
    models = tmp_path / "models"
    shutil.copytree(base[1], models)
    earlier = {path: path.read_bytes() for path in models.iterdir() if path.name.endswith(full_file)}
    watched = [base[0]] + ([models] if full_file == ".pth.tar" else [])
    _check_case(RUN + ["--model_dir", str(models)], ["cannot access", str(models), "the disk is full", *words],
                watched, capsys, monkeypatch, logs=False)
    assert earlier and all(path.read_bytes() == data for path, data in earlier.items())
    assert not list(models.glob(".*.tmp")) and not (models / ".csp-run.lock").exists()


def test_the_real_command_line_from_the_repository_root(tmp_path):
    """One case as a real process (the others run the same entry point in this process, to stay fast)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CSP_DATA_DIR": "no_such_folder"}
    env.pop("CSP_TRACEBACK", None)
    done = subprocess.run([sys.executable, "main/train_unsuper.py", *RUN, "--model_dir", str(tmp_path / "m")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    last = done.stderr.rstrip("\n").split("\n")[-1]
    assert last.startswith("train_unsuper.py: error: fmow: data folder ") and "no_such_folder" in last, done.stderr
    assert not (tmp_path / "m").exists()


def test_a_run_script_that_stops_at_start_makes_no_folder_and_no_lock(base, tmp_path):
    """The run scripts created the model folder and its .csp-run.lock even when the run stopped at start; a
    finished run's folder keeps no lock either."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CSP_DATA_DIR": str(tmp_path / "no data")}
    done = subprocess.run(["bash", "run-fmow-contsoftmax.sh", "--device", "cpu", "--model_dir", str(tmp_path / "m")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.count("error: ") == 1, done.stderr
    assert list(tmp_path.iterdir()) == []
    assert not list(base[1].glob(".csp-run.*"))


# ---------------------------------------------------------------------------------------------------------------
# your own data, resumed: the files are compared by content, wherever they are

OWN_RUN = ("--dataset custom --data_table obs.csv --features feats.npy --label_set labels.txt --image_predictions "
           "preds.npy --unsuper_loss contsoftmax --do_unsuper_train T --num_epochs_unsuper 1 --num_epochs 1 "
           "--batch_size 32 --device cpu --frequency_num 4 --hidden_dim 16 --num_filts 8").split()
OWN_LABELS = ["heron", "egret", "bittern", "stork"]


def _own_table(rng, rows=160):
    """Four labels in four regions; the first half with a split, the second drawn by the run."""
    labels = rng.integers(0, len(OWN_LABELS), rows)
    return pd.DataFrame({"image": [f"img{i:03d}.jpg" for i in range(rows)],
                         "lon": np.round(-150 + 90 * labels + rng.uniform(0, 40, rows), 3),
                         "lat": np.round(rng.uniform(-40, 40, rows), 3),
                         "label": [OWN_LABELS[label] for label in labels],
                         "split": [("val" if i % 5 == 0 else "train") if i < rows // 2 else "" for i in range(rows)]})


@pytest.fixture(scope="module")
def own_base(tmp_path_factory):
    """(data folder, model folder of a finished run on it, started from the data folder with relative paths)."""
    root = tmp_path_factory.mktemp("own_probe")
    data, models = root / "data", root / "models"
    data.mkdir()
    rng = np.random.default_rng(0)
    table = _own_table(rng)
    table.to_csv(data / "obs.csv", index=False)
    (data / "labels.txt").write_text("\n".join(OWN_LABELS) + "\n")
    np.save(data / "feats.npy", rng.normal(size=(len(table), 8)).astype(np.float32))
    np.save(data / "preds.npy", rng.dirichlet(np.ones(len(OWN_LABELS)), len(table)).astype(np.float32))
    cwd = os.getcwd()
    os.chdir(data)
    try:
        train_unsuper.main(OWN_RUN + ["--model_dir", str(models)], console=False)
    finally:
        os.chdir(cwd)
    assert sorted(path.name for path in (models / "splits").iterdir()) == ["obs.splits.csv"]
    return data, models


def _shift_lon(path):
    table = pd.read_csv(path)
    table["lon"] += 0.5
    table.to_csv(path, index=False)


def _relabel(path):
    table = pd.read_csv(path)
    table.loc[1, "label"] = next(label for label in OWN_LABELS if label != table.loc[1, "label"])
    table.to_csv(path, index=False)


OWN_CASES = [  # (name, change of the copied data folder, extra flags, words)
    ("the same relative --data_table from another folder", lambda d: _shift_lon(d / "obs.csv"), RELOAD,
     ["was trained on other data (--data_table is ", "obs.csv when it was trained (other content)"]),
    ("a row relabelled in the table", lambda d: _relabel(d / "obs.csv"), RELOAD, ["--data_table is "]),
    ("the label set reordered in place", lambda d: (d / "labels.txt").write_text("\n".join(OWN_LABELS[::-1])),
     RELOAD, ["--label_set is ", "class 0 is 'stork' here, 'heron' when it was trained (4 of 4 class ids"]),
    ("other features of the same shape", lambda d: _edit_npy(d / "feats.npy", lambda a: a[::-1]), RELOAD,
     ["--features is ", "feats.npy when it was trained (other content)"]),
    ("other image predictions", lambda d: _edit_npy(d / "preds.npy", lambda a: a[:, ::-1]), RELOAD,
     ["--image_predictions is "]),
    ("another --seed in the folder of a finished run", None, ["--seed", "1"],
     ["obs.splits.csv holds the splits an earlier run in this --model_dir drew", "give this run another --model_dir"]),
    ("a run that stops at start in the folder of a finished run", None, ["--features", "missing.npy"],
     ["--features missing.npy does not exist"]),
]


@pytest.mark.parametrize("change, flags, words", [case[1:] for case in OWN_CASES], ids=[case[0] for case in OWN_CASES])
def test_own_data_resumed_or_rerun_on_other_data(own_base, tmp_path, capsys, monkeypatch, change, flags, words):
    """Resume and reload trusted file names: the old class head was scored under new class ids and the results
    overwritten (exit 0); a run that stopped at start overwrote the drawn splits and appended to the log."""
    data, models = tmp_path / "elsewhere", tmp_path / "models"
    shutil.copytree(own_base[0], data)
    shutil.copytree(own_base[1], models)
    if change:
        change(data)
    monkeypatch.chdir(data)
    _check_case(OWN_RUN + ["--model_dir", str(models), *flags], words, [data, models], capsys, monkeypatch)


# ---------------------------------------------------------------------------------------------------------------
# tables.py and plots.py

def _unsuper_checkpoint(models_dir):
    return next(models_dir.glob("*UNSUPER*.pth.tar"))


PLOT_CASES = [  # (name, argv with {fine} / {pre} / {out}, change of the model folder, words)
    ("a class name the checkpoint lacks", ["map", "--checkpoint", "{fine}", "--class_id", "blue_jay"], None,
     ["--class_id 'blue_jay' is not a class name of", "(8 classes, e.g. 'class_0000')", "Give a class name or id"]),
    ("a class id out of range", ["map", "--checkpoint", "{fine}", "--class_id", "8"], None,
     ["--class_id must be in [0, 8)"]),
    ("a class name without class names", ["map", "--checkpoint", "{fine}", "--class_id", "heron"],
     lambda m: _edit_checkpoint(m, lambda c: c.pop("class_names")), ["names no classes; give the class id"]),
    ("a pre-training checkpoint's map", ["map", "--checkpoint", "{pre}"], None,
     ["is a pre-training checkpoint: its class head was never trained"]),
    ("a map of a malformed checkpoint", ["map", "--checkpoint", "{fine}"],
     lambda m: _edit_params(m, num_classes=1e9), ["is malformed: its params' num_classes is 1000000000.0"]),
    ("clusters of a malformed checkpoint", ["clusters", "--checkpoint", "{fine}"],
     lambda m: _edit_params(m, spa_enc_type=["gridcell"]), ["spa_enc_type is ['gridcell']"]),
    ("a map of an rff checkpoint with a degenerate map_range", ["map", "--checkpoint", "{fine}"],
     lambda m: _edit_params(m, spa_enc_type="rff", map_range=[-180, 180, 10, 10]),
     ["map_range is [-180, 180, 10, 10]"]),
]


@pytest.mark.parametrize("argv, change, words", [case[1:] for case in PLOT_CASES], ids=[case[0] for case in PLOT_CASES])
def test_bad_plots(base, tmp_path, capsys, monkeypatch, argv, change, words):
    models = tmp_path / "models"
    shutil.copytree(base[1], models)
    if change:
        change(models)
    names = {"fine": _checkpoint(models), "pre": _unsuper_checkpoint(models), "out": tmp_path / "figure.png"}
    argv = [word.format(**names) for word in argv] + ["--out", str(names["out"]), "--device", "cpu"]
    _check_command(plots.main, "plots.py", argv, words, [models, tmp_path], capsys, monkeypatch)


TABLE_CASES = [  # (argv, words): a flag the table sets, abbreviated, passed through to every run
    (["comparison", "--dataset", "fmow", "--", "--train_sample_rat", "0.1"], ["--train_sample_rat 0.1: not a flag"]),
    (["ablation", "--dataset", "fmow", "--", "--train_sample_rat=0.1"], ["--train_sample_rat=0.1: not a flag"]),
    (["comparison", "--dataset", "fmow", "--devic", "cpu"], ["--devic cpu: not a flag of train_unsuper.py"]),
    (["encoders", "--dataset", "fmow", "--", "--model_di", "x"], ["--model_di x: not a flag"]),
    (["comparison", "--dataset", "fmow", "--", "--train_sample_ratio", "0.1"],
     ["--train_sample_ratio: set by the table itself"]),
]


@pytest.mark.parametrize("argv, words", TABLE_CASES, ids=[" ".join(case[0]) for case in TABLE_CASES])
def test_bad_table_flags(base, tmp_path, capsys, monkeypatch, argv, words):
    """`-- --train_sample_rat 0.1` passed the table's own-flag check and filled the 5 % column with 10 % runs."""
    monkeypatch.setenv("CSP_DATA_DIR", str(base[0]))
    argv = argv[:3] + ["--model_dir", str(tmp_path / "runs"), "--collect_only"] + argv[3:]
    _check_command(tables.main, "tables.py", argv, words, [tmp_path, base[1]], capsys, monkeypatch)
    assert not (tmp_path / "runs").exists()


# ---------------------------------------------------------------------------------------------------------------
# the Python API's location encoder

API_CASES = [  # (name, call on the loaded encoder, words)
    ("complex coordinates", lambda e: e.embed(np.array([[10 + 2j, 20]])), ["got complex128 values"]),
    ("object coordinates", lambda e: e.embed(pd.DataFrame({"lon": ["10"], "lat": [20.0]}).to_numpy()),
     ["got object values"]),
    ("text coordinates", lambda e: e.class_probabilities([["10.5", "20"]]), ["got <U4 values"]),
    ("None in the coordinates", lambda e: e.embed([[10.0, None]]), ["got object values"]),
    ("boolean coordinates", lambda e: e.embed(np.array([[True, False]])), ["got bool values"]),
    ("a complex tensor", lambda e: e.class_probabilities(torch.ones(3, 2, dtype=torch.complex64)),
     ["got torch.complex64 values"]),
    ("ragged coordinates", lambda e: e.embed([[10.0, 20.0], [1.0]]), ["expected an (N, 2) array"]),
    ("a pre-training checkpoint's class probabilities",
     lambda e: models.load_location_encoder(_unsuper_checkpoint(Path(e.source).parent)).class_probabilities(
         [[10.0, 20.0]]), ["is a pre-training checkpoint"]),
]


@pytest.mark.parametrize("call, words", [case[1:] for case in API_CASES], ids=[case[0] for case in API_CASES])
def test_bad_input_to_the_location_encoder(base, call, words):
    """Complex input was cast to its real part with a warning, object and text input gave torch's TypeError, and a
    pre-training checkpoint's class probabilities were returned without a word."""
    encoder = models.load_location_encoder(_checkpoint(base[1]))
    with pytest.raises(ValueError) as raised:
        call(encoder)
    assert "\n" not in str(raised.value) and all(word in str(raised.value) for word in words), raised.value




# ---------------------------------------------------------------------------------------------------------------
# your own photos, tables, features and their side files

PHOTO_RUN = ("--dataset custom --device cpu --spa_enc_type gridcell --frequency_num 4 --hidden_dim 16 --num_filts 8 "
           "--unsuper_loss contsoftmax --unsuper_lr 0.001 --batch_size 8 --num_epochs_unsuper 1 --num_epochs 1 "
           "--train_sample_ratio 1").split()


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
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
    train_unsuper.main(PHOTO_RUN + ["--data_table", str(root / "obs.csv"), "--features", str(root / "feats.npy"),
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
PHOTO_TABLE = PHOTO_RUN + ["--data_table", "{d}/obs.csv", "--features", "{d}/feats.npy", "--model_dir", "{m}"]

PHOTO_CASES = [  # (name, command, argv, change of the data folder, words)
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
    ("labels mixing integers and text", "train", PHOTO_TABLE, lambda d: _table(
        d, lambda t: t.__setitem__("label", ["1", "--3"] * 12)), ["column 'label', rows 1, 3", "not integers"]),
    ("table not UTF-8", "train", PHOTO_TABLE,
     lambda d: _write_bytes(d / "obs.csv", (d / "obs.csv").read_text().replace("red", "r\xe9d"), "latin-1"),
     ["obs.csv: column 'image', rows 12", "not UTF-8 text"]),
    ("label set not UTF-8", "train", PHOTO_TABLE + ["--label_set", "{d}/labels.txt"],
     lambda d: _write_bytes(d / "labels.txt", "red\nbl\xfce\n", "latin-1"), ["lines 2 are not UTF-8 text"]),
    ("label set repeating", "train", PHOTO_TABLE + ["--label_set", "{d}/labels.txt"],
     lambda d: (d / "labels.txt").write_text("red\nblue\nred\n"), ["repeats 'red'"]),
    ("label set missing", "train", PHOTO_TABLE + ["--label_set", "{d}/nothing.txt"], None, ["does not exist"]),
    ("lat not a number", "train", PHOTO_TABLE, lambda d: _table(d, _set_cell("lat", 2, "(1+2j)")),
     ["column 'lat', rows 2: not a number"]),
    ("lat written NA", "train", PHOTO_TABLE, lambda d: _table(d, _set_cell("lat", 4, "NA")),
     ["column 'lat', rows 4: not a number (e.g. 'NA')"]),
    ("lon boolean", "train", [a.replace("obs.csv", "obs.parquet") for a in PHOTO_TABLE],
     lambda d: pd.read_csv(d / "obs.csv").assign(lon=lambda t: t["lon"] > 0).to_parquet(d / "obs.parquet"),
     ["obs.parquet: column 'lon'", "not real numbers"]),
    ("date impossible", "train", PHOTO_TABLE, lambda d: _table(d, _set_cell("date", 5, "2021-13-45")),
     ["column 'date', rows 5: not a date"]),
    ("date fraction beyond the year", "train", PHOTO_TABLE, lambda d: _table(d, _set_cell("date", 6, "1.5")),
     ["column 'date', rows 6: a number outside [0, 1]"]),
    ("features npz", "train", [a.replace("feats.npy", "feats.npz") for a in PHOTO_TABLE],
     lambda d: np.savez(d / "feats.npz", np.zeros((24, 4))), ["(a .npz archive)"]),
    ("features truncated", "train", PHOTO_TABLE, _truncate_features, ["truncated or damaged"]),
    ("rows file without image column", "train", PHOTO_TABLE, lambda d: _side(d, "rows").write_text("row\n0\n"),
     ["--features", "no column 'image'"]),
    ("rows file with a repeated id", "train", PHOTO_TABLE,
     lambda d: _side(d, "rows").write_text("row,image\n" + "0,a.jpg\n" * 24), ["--features", "repeated image ids"]),
    ("unreadable report row not a number", "train", PHOTO_TABLE,
     lambda d: _side(d, "unreadable").write_text("row,image,error\nseven,a,b\n"), ["rows 0: not a feature row"]),
    ("progress not JSON", "train", PHOTO_TABLE, lambda d: _side(d, "progress").write_text("[1"), ["not JSON"]),
    ("extraction unfinished", "train", PHOTO_TABLE, lambda d: _progress(d, lambda p: {**p, "rows_done": 8}),
     ["the extraction is unfinished (8 of 24 rows)"]),
    ("progress claims more rows", "train", PHOTO_TABLE, lambda d: _progress(d, lambda p: {**p, "rows_done": 30}),
     ["claims 30 of 24 rows done"]),
]
COMMANDS = {"extract": (extract_features.main, "extract_features.py"),
            "photo_table": (photo_table.main, "photo_table.py"), "train": (train_unsuper.main, "train_unsuper.py")}


@pytest.mark.parametrize("command, argv, change, words", [case[1:] for case in PHOTO_CASES],
                         ids=[case[0] for case in PHOTO_CASES])
def test_bad_own_photos_tables_and_features(photos, tmp_path, capsys, monkeypatch, command, argv, change, words):
    data, models = tmp_path / "data", tmp_path / "models"
    shutil.copytree(photos[0], data)
    shutil.copytree(photos[1], models)
    (tmp_path / "empty").mkdir()
    if change:
        change(data)
    argv = [a.format(d=data, m=models, t=tmp_path / "empty") for a in argv]
    main, program = COMMANDS[command]
    _check_command(main, program, argv, words, [data, models], capsys, monkeypatch, logs=command != "train")


def test_an_extraction_into_an_out_in_use_names_the_first(photos, tmp_path, capsys, monkeypatch):
    data = tmp_path / "data"
    shutil.copytree(photos[0], data)
    with RunLock(data, name=".feats.npy"):
        _check_command(extract_features.main, "extract_features.py", [a.format(d=data) for a in EXTRACT],
                       ["--out", "is in use by another run (process"], [data], capsys, monkeypatch)
