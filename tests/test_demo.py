"""The demo command end to end on a tiny build with a few epochs: the table's four rows, the maps, the report."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from csp import demo
from csp import train_unsuper

TINY_BUILD = dict(n_points=400, tile_size=32, min_class_count=5, seed=3)
SHORT = ["--num_epochs_unsuper", "2", "--num_epochs", "6", "--batch_size", "128"]
ROWS = ("Image only", "Location only", "Sup. Only (grid)", "CSP-MC-BLD")


@pytest.fixture(scope="module")
def done(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("demo")
    return demo.run_demo(out_dir, seed=0, device="cpu", extra_flags=SHORT, readme_dir=out_dir / "image",
                         build_args=TINY_BUILD, cluster_step=6.0, max_cluster_points=200), out_dir


def test_table_has_the_four_rows_and_the_figures_exist(done):
    result, out_dir = done
    assert [row[0] for row in result["rows"]] == list(ROWS)
    for name in ROWS:
        assert f"| {name}" in result["report"]
    table = [line for line in result["report"].splitlines() if line.startswith("| ")]
    assert len(table) == 1 + len(ROWS)
    for name in ("class_map.png", "clusters.png", "image/demo_class_map.png", "image/demo_clusters.png"):
        path = out_dir / name
        assert path.is_file() and path.read_bytes().startswith(b"\x89PNG"), name
        assert str(path) in result["report"]
    assert (out_dir / "demo_results.md").read_text() == result["report"] + "\n"


def test_runs_use_the_run_script_flags_with_the_demo_overrides(done):
    result, out_dir = done
    script = train_unsuper.script_argv(demo.FMOW_SCRIPT)
    for name, results in result["results"].items():
        params = results["params"]
        assert params["dataset"] == "custom" and params["train_sample_ratio"] == 0.05
        assert params["data_table"] == str(out_dir / "data" / "observations.csv")
        assert params["unsuper_loss"] == ("none" if name == "Sup. Only (grid)" else "contsoftmax")
        assert (params["spa_enc_type"], params["frequency_num"], params["spa_f_act"]) == ("gridcell", 32, "gelu")
        assert params["unsuper_lr"] == 0.001 and params["num_epochs"] == 6
        assert Path(results["files"]["model_file_name"]).parent == out_dir / "runs" / "seed0"
    assert "--unsuper_lr" in script
    for flags, reason in demo.DEMO_OVERRIDES:
        assert f"  {' '.join(flags)}: {reason}\n" in result["report"]
    assert f"  {' '.join(SHORT)}: given after --, these win over the flags above\n" in result["report"]
    assert all(0 <= top1 <= 100 for _, _, top1, _ in result["rows"])


def test_dataset_is_reused_only_for_the_same_recipe(done):
    _, out_dir = done
    data_dir = out_dir / "data"
    assert demo.dataset_is_built(data_dir, TINY_BUILD)
    assert not demo.dataset_is_built(data_dir, {**TINY_BUILD, "n_points": 500})
    assert not demo.dataset_is_built(data_dir, {})
    assert not demo.dataset_is_built(out_dir / "nothing", TINY_BUILD)


def test_estimates_scale_with_the_load_and_the_cores():
    assert demo.estimate(30.0, cores=2, load=0.0) == ("about 30-45 s (30 s on a quiet 2-core CPU; this machine: "
                                                      "2 cores, load 0.0)")
    assert demo.estimate(30.0, cores=2, load=5.0).startswith("about 1-9 min (30 s on a quiet")
    assert demo.estimate(60.0, cores=1, load=0.0).startswith("about 2-12 min (60 s on a quiet 2-core CPU; this "
                                                             "machine: 1 core, load 0.0, so slower)")


def test_flags_the_demo_sets_itself_are_refused(tmp_path):
    with pytest.raises(ValueError, match="--seed: set by the demo itself"):
        demo.run_argvs(tmp_path, 0, extra_flags=["--seed", "3"])
    with pytest.raises(ValueError, match="--unsuper_loss: set by the demo itself"):
        demo.run_argvs(tmp_path, 0, extra_flags=["--unsuper_loss=imgcontloss"])


@pytest.mark.parametrize("argv, message", [
    (["--seed", "-1"], r"--seed must be in \[0, 2\*\*63\)"),
    (["--device", "mps"], "--device mps"),
    (["--", "--lrr", "1"], "--lrr 1: not a flag of train_unsuper.py"),
    (["--", "--lr", "abc"], "argument --lr: invalid float value: 'abc'"),
    (["--", "--lr", "nan"], "--lr must be a finite number"),
    (["--", "--spa_enc_net", "sirn"], "--spa_enc_net must be one of ffn, siren"),
])
def test_bad_run_flags_stop_the_demo_before_the_dataset_is_built(tmp_path, monkeypatch, argv, message):
    """They stopped the demo only after its dataset (minutes) was built."""
    monkeypatch.setattr(demo, "ensure_dataset", lambda *args: pytest.fail("the dataset was built"))
    with pytest.raises(ValueError, match=message):
        demo.main(["--out_dir", str(tmp_path / "demo"), *argv])
    assert not (tmp_path / "demo").exists()


def test_an_out_dir_that_is_a_file_stops_the_demo(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="--out_dir .*notes.txt is a file"):
        demo.main(["--out_dir", str(tmp_path / "notes.txt")])
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_command_line_help_runs_from_the_repository_root_and_from_main():
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for cwd, script in ((root, "main/demo.py"), (root / "main", "demo.py")):
        done = subprocess.run([sys.executable, script, "--help"], cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0 and "--readme_figures" in done.stdout, done.stderr[-2000:]


@pytest.mark.parametrize("typo", [["--sed", "1"], ["--seed", "1", "--readme_figure"]])
def test_a_mistyped_demo_option_is_the_demo_s_own_short_usage_error(typo):
    """`demo.py --sed 1` printed train_unsuper's 46-line usage titled demo.py; flags for the runs go after --."""
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "main/demo.py", *typo], cwd=root, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"unrecognized arguments: {typo[-1] if len(typo) == 3 else ' '.join(typo)}" in done.stderr
    assert "--spa_enc_type" not in done.stderr and len(done.stderr.splitlines()) <= 4


def test_the_demo_console_shows_the_loggers_of_the_builder_extraction_maps_and_progress():
    """With the package's names (csp.progress, ...): bare names matched no logger, so a redirected demo log showed
    no progress while the runs trained."""
    from csp import demo, demo_data, extract_features, land_mask, plots, progress
    for module in (demo_data, extract_features, land_mask, plots, progress):
        assert module.logger.name in demo.CONSOLE_LOGGERS
