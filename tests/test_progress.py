import logging
import os
import subprocess
import sys

import pytest

from csp import progress
from csp import train_unsuper
from conftest import ROOT
from csp.synthetic_data import write_synthetic_dataset


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_lines_at_the_interval_with_rate_and_time_left(caplog):
    clock = Clock()
    with caplog.at_level(logging.INFO, logger="csp.progress"):
        ticker = progress.PhaseProgress("fine-tuning", 2, 6, enabled=True, interval=60, clock=clock)
        clock.now += 30
        ticker.update(2, 500, 1000, 4, 10)            # half an epoch in 30 s: no line yet
        assert caplog.text.count("Progress: fine-tuning epoch") == 0
        clock.now += 30
        ticker.update(2, 1000, 1000, 9, 10)           # epoch 3 of 6 done after 60 s: 3 epochs left, 3 min
        clock.now += 60
        ticker.update(3, 1000, 1000, 9, 10)           # 2 of 4 epochs in 120 s: 2 min left
    lines = [line for line in caplog.text.splitlines() if "Progress: fine-tuning epoch" in line]
    assert "epochs 3-6 of 6; a line every 1 min" in caplog.text
    assert lines[0].endswith("fine-tuning epoch 3/6 (batch 10/10), 17 samples/s, about 3 min left in this phase")
    assert lines[1].endswith("fine-tuning epoch 4/6 (batch 10/10), 17 samples/s, about 2 min left in this phase")
    assert len(lines) == 2


def test_disabled_progress_logs_nothing(caplog):
    clock = Clock()
    with caplog.at_level(logging.INFO, logger="csp.progress"):
        ticker = progress.PhaseProgress("pre-training", 0, 3, enabled=False, interval=0, clock=clock)
        clock.now += 1000
        ticker.update(0, 10, 10, 0, 1)
    assert caplog.text == ""


@pytest.mark.parametrize("value, seconds", [("", 60.0), ("0", 0.0), ("2.5", 2.5)])
def test_interval_from_the_environment(monkeypatch, value, seconds):
    monkeypatch.setenv(progress.INTERVAL_ENV, value)
    assert progress.progress_interval() == seconds


def test_bad_interval_is_named(monkeypatch):
    monkeypatch.setenv(progress.INTERVAL_ENV, "soon")
    with pytest.raises(ValueError, match="CSP_PROGRESS_INTERVAL='soon'"):
        progress.progress_interval()


def test_durations():
    assert [progress.format_duration(s) for s in (40.2, 115, 720, 3900)] == ["40 s", "2 min", "12 min", "1 h 05 min"]


def _argv(tmp_path):
    data = tmp_path / "data"
    write_synthetic_dataset("fmow", data, num_train=300, num_val=40, num_classes=5, feat_dim=8)
    return ["--dataset", "fmow", "--device", "cpu", "--unsuper_loss", "contsoftmax", "--load_cnn_features_train", "T",
            "--inat2018_resolution", "pretrain", "--do_unsuper_train", "T", "--num_epochs_unsuper", "2",
            "--num_epochs", "2", "--batch_size", "128", "--num_filts", "16", "--hidden_dim", "32", "--frequency_num",
            "8", "--model_dir", str(tmp_path / "models")]


def test_a_run_with_stderr_in_a_file_logs_progress_lines(tmp_path):
    env = {**os.environ, "CSP_DATA_DIR": str(tmp_path / "data"), "CSP_PROGRESS_INTERVAL": "0", "OMP_NUM_THREADS": "1"}
    with open(tmp_path / "stderr.txt", "w") as handle:
        done = subprocess.run([sys.executable, "train_unsuper.py"] + _argv(tmp_path), cwd=ROOT / "main", env=env,
                              stderr=handle, stdout=subprocess.DEVNULL, timeout=300)
    text = (tmp_path / "stderr.txt").read_text()
    assert done.returncode == 0, text[-2000:]
    assert "Progress: pre-training epoch 2/2 (batch 3/3), " in text and " samples/s, about " in text
    assert "Progress: fine-tuning epoch 1/2 (batch 1/3), " in text


def test_a_run_on_a_terminal_shows_bars_not_progress_lines(tmp_path, monkeypatch, capsys):
    argv = _argv(tmp_path)
    monkeypatch.setenv("CSP_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CSP_PROGRESS_INTERVAL", "0")
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    results = train_unsuper.main(argv)
    log = open(results["files"]["log_file_name"]).read()
    assert "Unsupervised Training Epoch" in log and "Progress:" not in log
    assert "pre-training: 100%" in capsys.readouterr().err


def test_a_bar_with_stderr_redirected_logs_lines_instead_of_drawing(caplog, capsys, monkeypatch):
    """The tiles and image-feature bars wrote `\\r`-drawn bars into redirected logs."""
    monkeypatch.setenv(progress.INTERVAL_ENV, "0")
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    with caplog.at_level(logging.INFO, logger="csp.progress"):
        assert sum(progress.LoggedBar(range(3), desc="tiles", unit="batch")) == 3
    lines = [record.getMessage() for record in caplog.records if record.name == "csp.progress"]
    assert lines[0].startswith("Progress: tiles: 0/3 [") and lines[-1].startswith("Progress: tiles: 3/3 [")
    assert "\r" not in capsys.readouterr().err
