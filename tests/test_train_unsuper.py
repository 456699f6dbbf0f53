"""The entry point and the two run scripts, end to end on tiny synthetic data in both layouts."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from csp import arguments
from csp import checkpoints
from csp import models
from csp import train_unsuper
from csp.synthetic_data import write_synthetic_dataset

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = {"fmow": ROOT / "run-fmow-contsoftmax.sh", "inat_2018": ROOT / "run-inat_2018-contsoftmax.sh"}
# short runs: few epochs, an evaluation at fine-tuning epoch 5, the script's values otherwise
SHORT = ["--device", "cpu", "--num_epochs_unsuper", "2", "--num_epochs", "30"]


@pytest.fixture(scope="module")
def data_dir(synthetic_data_dir):
    """Both layouts: fmow (dense few-shot predictions) and inat_2018 (sparse full predictions)."""
    return synthetic_data_dir("fmow", "inat_2018", num_train=2000, num_val=300, num_test=0, num_classes=20,
                              feat_dim=32)


def script_params(dataset, *extra):
    return arguments.default_params(train_unsuper.script_argv(SCRIPTS[dataset]) + list(extra))


def test_scripts_carry_the_original_values():
    fmow, inat = script_params("fmow"), script_params("inat_2018")
    for params in (fmow, inat):
        assert params["device"] == "auto" and params["unsuper_loss"] == "contsoftmax"
        assert (params["spa_enc_type"], params["frequency_num"], params["max_radius"], params["min_radius"]) == \
            ("gridcell", 32, 360, 0.1)
        assert (params["num_neg_rand_loc"], params["rand_sample_weight"], params["simcse_weight"]) == (1, 1, 1)
        assert (params["unsuper_temp_inbatch"], params["unsuper_temp_negloc"], params["unsuper_temp_simcse"]) == \
            (20, 1, 1)
        assert (params["train_sample_ratio"], params["neg_rand_type"]) == (0.05, "sphericalold")
    assert (inat["spa_f_act"], inat["unsuper_lr"], inat["lr"], inat["num_epochs_unsuper"], inat["num_epochs"]) == \
        ("leakyrelu", 0.0005, 0.001, 30, 200)
    assert (inat["cnn_pred_type"], inat["load_unsuper_model"], inat["load_super_model"]) == ("full", False, False)
    assert inat["model_dir"] == "../model_dir/models_inat_2018/"
    assert (fmow["spa_f_act"], fmow["unsuper_lr"], fmow["lr"], fmow["num_epochs_unsuper"], fmow["num_epochs"]) == \
        ("gelu", 0.00005, 0.001, 300, 300)
    assert (fmow["cnn_pred_type"], fmow["load_unsuper_model"], fmow["load_super_model"]) == ("fewshot", True, True)
    assert fmow["model_dir"] == "../model_dir/models_fmow/"
    pretrained, finetuned = checkpoints.model_file_names(inat)
    assert os.path.basename(pretrained) == ("model_inat_2018_gridcell_0.0010_32_0.1000000_1_512_leakyrelu_"
                                            "UNSUPER-contsoftmax_0.000500_1.000_1_1.000_TMP20.0000_1.0000_1.0000"
                                            ".pth.tar")


@pytest.mark.parametrize("dataset, flag", [("fmow", " fewshot-ratio0.050 "), ("inat_2018", "")])
def test_run_script_flags_end_to_end(tmp_path, monkeypatch, data_dir, dataset, flag):
    monkeypatch.setenv("CSP_DATA_DIR", str(data_dir))
    argv = train_unsuper.script_argv(SCRIPTS[dataset]) + SHORT + ["--model_dir", str(tmp_path)]
    results = train_unsuper.main(argv)
    expected = checkpoints.model_file_names(arguments.default_params(argv))
    assert (results["files"]["unsuper_model_file_name"], results["files"]["model_file_name"]) == expected
    assert os.path.basename(expected[1]).startswith(f"model_{dataset}_gridcell_")
    for path in expected:
        assert checkpoints.load_checkpoint(path)["state_dict"]
        # the class names travel with the model (an extra key; the original's loader reads only its four)
        assert models.load_location_encoder(path).class_names == [f"class_{c:04d}" for c in range(20)]
    with open(results["files"]["log_file_name"]) as handle:
        log = handle.read()
    for line in ("- INFO - \nnum_classes\t20\n", "- INFO - num users    \t", "\nUnsupervised Training Epoch\t1\n",
                 "]\tUnsupervised contsoftmax Loss  : ", "\nEpoch\t29\n", "]\tLoss  : ", "Test loss   : ",
                 f"Saving output model to {expected[0]}\n", "\nNo prior\n", " Split ID: 0\n",
                 f" Top 1\t(Epoch 5){flag}acc (%):   ", " Top 10\tLocEnc (Epoch 5)acc (%):   ",
                 f" Top 1\t{flag}acc (%):   ", " Top 1\tLocEnc acc (%):   ",
                 f" Model :\t{os.path.basename(expected[1])}\n"):
        assert line in log, line
    top1 = {e["method"]: e["splits"][0]["top1"] for e in results["evaluations"] if e["epoch"] is None}
    assert top1["location_prior"] > top1["no_prior"] + 5
    # each block says what it is; the summary repeats the final Top-1s; epoch lines end at [n/n]
    final = log[log.rindex("\nNo prior\n"):]
    assert final.index("Location encoder prior (image x location encoder)") < final.index("LocEnc acc")
    assert final.index("\nLocation encoder alone (LocEnc)\n") < final.index(" Top 1\tLocEnc acc")
    assert (f"Summary: Top-1 (%) on val: image x location encoder prior {top1['location_prior']:.2f}, image alone "
            f"{top1['no_prior']:.2f}, location encoder alone (LocEnc) {top1['location_only']:.2f}\n") in log
    assert "Cannot load model" not in log
    if dataset == "fmow":                   # its load flags are T: a fresh run has nothing to resume
        assert "No fine-tuned checkpoint to resume from yet (" in log
        assert "No pre-trained checkpoint to resume from yet (" in log and "pre-training starts at epoch 0" in log
    last_lines = [line for line in log.splitlines() if "]\tLoss  : " in line]
    done, size = last_lines[-1].split("[")[1].split("]")[0].split("/")
    assert done == size and int(size) > 0
    assert os.path.isfile(results["files"]["ranks"]) and os.path.isfile(results["files"]["results"])


def test_quiet_run_keeps_the_log_lines_off_the_console(tmp_path, monkeypatch, capsys, data_dir):
    monkeypatch.setenv("CSP_DATA_DIR", str(data_dir))
    argv = train_unsuper.script_argv(SCRIPTS["fmow"]) + ["--device", "cpu", "--num_epochs_unsuper", "1",
                                                         "--num_epochs", "1", "--model_dir", str(tmp_path)]
    results = train_unsuper.main(argv, console=False)
    assert "Epoch" not in capsys.readouterr().err
    with open(results["files"]["log_file_name"]) as handle:
        assert "\nEpoch\t0\n" in handle.read()


def test_run_script_through_bash_passes_extra_arguments(tmp_path, data_dir):
    env = {**os.environ, "CSP_DATA_DIR": str(data_dir), "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    model_dir = tmp_path / "models"
    done = subprocess.run(["bash", str(SCRIPTS["fmow"]), "--device", "cpu", "--num_epochs_unsuper", "1",
                           "--num_epochs", "1", "--model_dir", str(model_dir)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Top 1\tLocEnc acc (%):" in done.stderr
    assert len(list(model_dir.glob("*UNSUPER-contsoftmax*.pth.tar"))) == 1
    assert len(list(model_dir.glob("*_contsoftmax_ratio0.050_*.pth.tar"))) == 1
    assert len(list(model_dir.glob("*.results.json"))) == 1


@pytest.mark.parametrize("released_name", [False, True])
def test_original_checkpoint_is_evaluated_without_retraining(tmp_path, monkeypatch, golden_dir, released_name):
    """The golden fMoW-flag checkpoint (20 classes, 5 users, 2048-d image head), under the fine-tuned name the
    flags produce, or the released name without `inception_v3_`."""
    root = tmp_path / "data"
    write_synthetic_dataset("fmow", root, num_train=100, num_val=40, num_classes=20, feat_dim=2048)
    monkeypatch.setenv("CSP_DATA_DIR", str(root))
    argv = train_unsuper.script_argv(SCRIPTS["fmow"]) + [
        "--device", "cpu", "--model_dir", str(tmp_path / "m"), "--do_unsuper_train", "F", "--do_super_train", "F"]
    _, finetuned = checkpoints.model_file_names(arguments.default_params(argv))
    target = finetuned.replace("_inception_v3_", "_") if released_name else finetuned
    (tmp_path / "m").mkdir()
    shutil.copy(golden_dir / "encoders" / "gridcell_fmow_csp.pth.tar", target)
    before = Path(target).read_bytes()
    results = train_unsuper.main(argv)
    assert Path(target).read_bytes() == before and not (released_name and os.path.exists(finetuned))
    with open(results["files"]["log_file_name"]) as handle:
        log = handle.read()
    assert f" Model :\t{os.path.basename(target)}\n" in log and "Epoch" not in log
    ranks = np.load(results["files"]["ranks"])
    assert ranks["ranks_location_prior"].shape == (40,) and (ranks["ranks_location_only"] >= 0).all()


@pytest.mark.parametrize("argv, message", [
    (["--use_layn", "yes"], "--use_layn must be T or F, got 'yes'"),
    (["--dataset", "fmow", "--device", "cpu"], "fmow"),
])
def test_bad_input_on_the_command_line_is_one_message_not_a_traceback(tmp_path, argv, message):
    env = {**os.environ, "CSP_DATA_DIR": str(tmp_path / "no_data_here")}
    env.pop("CSP_TRACEBACK", None)
    done = subprocess.run([sys.executable, "train_unsuper.py", *argv, "--model_dir", str(tmp_path / "models")],
                          cwd=ROOT / "main", env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("train_unsuper.py: error: ") and message in done.stderr
