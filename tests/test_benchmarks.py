"""The benchmarks and drawing helpers of `benchmarks/` run, as scripts from any folder and imported."""
import os
import subprocess
import sys

import pytest
from PIL import Image

import benchmark_encoders
import draw_overview
from conftest import ROOT


def _script(name, *argv, cwd):
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / name), *argv], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def test_the_gpu_benchmark_runs_end_to_end_on_the_cpu_at_a_tiny_size(tmp_path):
    """benchmark_gpu.sh → benchmark_training.py, from another folder: data written, cold and warm start-ups."""
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "benchmark_gpu.sh"), str(tmp_path / "data"),
                           "--num_train", "300", "--num_val", "50", "--num_batches", "1", "--num_large_batches", "1",
                           "--repeats", "1", "--variants", "eager"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "DEVICE": "cpu", "PYTHON": sys.executable})
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "  cold: set-up" in done.stdout and "device cpu" in done.stdout
    for figure in ("cold start: set-up", "warm start: pre-training, batch 1024", "eager: final evaluation",
                   "eager: pre-training, batch 8192"):
        assert any(line.startswith(figure) for line in lines), figure
    assert "commit" in lines[0] and "load average" in lines[-1]


def test_memory_benchmark_steps_run_in_processes_of_their_own(tmp_path):
    """Each step runs in a spawned process, which must find the package too."""
    done = _script("benchmark_memory.py", "--out", str(tmp_path / "data"), "--num_train", "400", "--feat_dim", "4",
                   "--num_batches", "1", "--rounds", "1", "--storages", "mapped", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "train mapped" in done.stdout and "features: StreamedFeatures" in done.stdout
    assert not (tmp_path / "data" / "yfcc").exists()


def test_encoder_benchmark_prints_one_line_per_encoder(capsys):
    benchmark_encoders.main(["--device", "cpu", "--encoders", "gridcell", "spherical_harmonics+siren",
                             "--batch_sizes", "8", "--warmup", "0", "--repeats", "1", "--rounds", "2"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("device cpu") and len(lines) == 3
    assert lines[1].startswith("gridcell") and lines[2].startswith("spherical_harmonics+siren")
    assert "forward" in lines[2] and "forward+backward" in lines[2]
    with pytest.raises(ValueError, match="--encoders grid: not a location encoder"):
        benchmark_encoders.main(["--encoders", "grid"])


def test_model_overview_is_drawn(tmp_path):
    draw_overview.main(["--out", str(tmp_path / "overview.png")])
    assert Image.open(tmp_path / "overview.png").size == (2400, 1440)
