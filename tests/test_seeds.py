import os
import subprocess
import sys

import pytest

from csp import seeds
from csp import table_runs
from conftest import ROOT

FMOW_SCRIPT = ROOT / "run-fmow-contsoftmax.sh"

TINY = ["--device", "cpu", "--num_epochs_unsuper", "1", "--num_epochs", "1", "--num_filts", "16", "--hidden_dim",
        "32", "--frequency_num", "8", "--batch_size", "64"]
TINY_FMOW = {"num_train": 200, "num_val": 40, "num_classes": 5, "feat_dim": 8}


def test_each_seed_runs_in_its_own_folder_and_the_summary_is_over_the_seeds(tmp_path, monkeypatch, synthetic_data_dir,
                                                                           capsys):
    monkeypatch.setenv("CSP_DATA_DIR", str(synthetic_data_dir("fmow", **TINY_FMOW)))
    results = seeds.main(["--seeds", "3", "5", "--script", str(FMOW_SCRIPT), "--",
                          "--model_dir", str(tmp_path)] + TINY)
    assert sorted(results) == [3, 5]
    for seed in (3, 5):
        assert results[seed]["params"]["seed"] == seed and results[seed]["params"]["dataset"] == "fmow"
        assert results[seed]["files"]["results"].startswith(str(tmp_path / f"seed{seed}") + os.sep)
    tops = [table_runs.final_top1(results[seed], "location_only") for seed in (3, 5)]
    mean, std, _ = table_runs.mean_spread(tops, "std")
    out = capsys.readouterr().out
    assert f"LocEnc Top-1: {mean:.2f} ± {std:.2f} (std)" in out and f"3: {tops[0]:.2f}, 5: {tops[1]:.2f}" in out
    assert "Image x prior Top-1: " in out and "over 2 seeds" in out


@pytest.mark.parametrize("argv, message", [
    (["--seeds", "1", "1"], "each seed once"),
    (["--seeds", "2", "-1"], r"--seeds 2 -1: every seed must be in \[0, 2\*\*63\)"),
    (["--seeds", "1", "--", "--seed", "2"], "--seed: set per run by --seeds"),
])
def test_bad_seed_flags_are_named(argv, message):
    with pytest.raises(ValueError, match=message):
        seeds.main(argv)


def test_run_script_takes_several_seeds_from_the_environment(tmp_path, synthetic_data_dir):
    env = {**os.environ, "CSP_DATA_DIR": str(synthetic_data_dir("fmow", **TINY_FMOW)), "PYTHON": sys.executable,
           "OMP_NUM_THREADS": "1", "SEEDS": "0 1"}
    done = subprocess.run(["bash", str(FMOW_SCRIPT), "--model_dir", str(tmp_path)] + TINY,
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "seed 1 (2 of 2)" in done.stdout and "LocEnc Top-1: " in done.stdout and "over 2 seeds" in done.stdout
    for seed in (0, 1):
        assert len(list((tmp_path / f"seed{seed}").glob("*.results.json"))) == 1
