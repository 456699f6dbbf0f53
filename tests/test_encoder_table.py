import numpy as np
import pandas as pd
import pytest

from csp import encoder_table
from csp import table_runs
from csp import tables
from csp.synthetic_data import write_synthetic_dataset
from csp.results import read_results
from test_own_data import NUM_IMAGES, draw_images
from test_tables import _no_runs

TINY = ["--num_epochs", "1", "--num_epochs_unsuper", "1", "--num_filts", "16", "--hidden_dim", "32",
        "--frequency_num", "4", "--batch_size", "64", "--legendre_poly_num", "3"]


@pytest.fixture(scope="module")
def encoder_runs(tmp_path_factory):
    """Two encoders x both methods x one ratio x two seeds on tiny synthetic fMoW data (1 epoch each)."""
    root = tmp_path_factory.mktemp("encoders")
    data = root / "data"
    write_synthetic_dataset("fmow", data, num_train=300, num_val=40, num_classes=5, feat_dim=8, fewshot_ratios=(0.1,))
    argv = ["encoders", "--dataset", "fmow", "--data_dir", str(data), "--model_dir", str(root / "runs"),
            "--device", "cpu", "--encoders", "sphere", "spherical_harmonics_siren", "--ratios", "0.1",
            "--seeds", "0", "1", "--", *TINY]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CSP_DATA_DIR", str(data))     # restored afterwards (--data_dir sets it)
        return root, argv, tables.main(argv)


def test_every_encoder_and_method_is_run_per_seed_and_averaged(encoder_runs):
    root, _, frame = encoder_runs
    assert sorted(path.name for path in (root / "runs").iterdir()) == [
        "encoders_fmow_released.csv", "encoders_fmow_released.md", "seed0", "seed1"]
    assert len(list((root / "runs" / "seed1").glob("*.results.json"))) == 4     # 2 encoders x 2 methods
    rows = pd.read_csv(root / "runs" / "encoders_fmow_released.csv").set_index("encoder")
    assert list(rows.index) == ["no_prior", "sphere", "spherical_harmonics_siren"]
    for method in ("Sup. Only 10%", "CSP-MC-BLD 10%"):
        assert (rows[f"{method} seeds"] == 2).all()
        assert rows[f"{method} mean"].between(0, 100).all()
    assert rows.loc["sphere", "TorchSpatial 100%"] == 70.85 and rows.loc["no_prior", "TorchSpatial 100%"] == 69.83
    markdown = (root / "runs" / "encoders_fmow_released.md").read_text()
    assert "| `spherical_harmonics_siren` | Siren (SH) |" in markdown and "70.20 |" in markdown
    assert "seeds 0, 1" in markdown and "--num_epochs 1" in markdown


def test_finished_runs_are_collected_not_run_again(encoder_runs, monkeypatch):
    root, argv, frame = encoder_runs
    _no_runs(monkeypatch)
    monkeypatch.setenv("CSP_DATA_DIR", str(root / "data"))
    again = tables.main(argv)
    pd.testing.assert_frame_equal(again, frame)
    collected = tables.main(argv[:argv.index("--")] + ["--collect_only", "--"] + TINY)
    pd.testing.assert_frame_equal(collected, frame)


def test_runs_made_with_other_flags_stop_the_table(encoder_runs, monkeypatch):
    root, argv, _ = encoder_runs
    _no_runs(monkeypatch)
    monkeypatch.setenv("CSP_DATA_DIR", str(root / "data"))
    with pytest.raises(ValueError, match="made with other flags"):
        tables.main(argv + ["--lr_decay", "0.5"])     # not in the file names
    collect = argv[:argv.index("--")] + ["--collect_only", "--"] + TINY
    with pytest.raises(ValueError, match="holds no finished run made with these flags"):
        tables.main(collect + ["--lr", "0.5"])        # in the file names: other files, none of this table's


def test_run_flags_follow_encoder_method_ratio_and_seed():
    argv = encoder_table.run_argv("fmow", "released", "nerf", "mc_bld", 0.05, 2, "runs", "cpu", ["--lr", "0.1"])
    assert argv[argv.index("--model_dir") + 1].endswith("seed2/")
    assert argv[-4:] == ["--seed", "2", "--lr", "0.1"]
    for flags in (["--spa_enc_type", "nerf", "--frequency_num", "8"], ["--unsuper_loss", "contsoftmax"],
                  ["--cnn_pred_type", "fewshot", "--load_cnn_features_train", "T"]):
        assert " ".join(flags) in " ".join(argv)
    with pytest.raises(ValueError, match="--seed: set by the table itself"):
        encoder_table.main(["--dataset", "fmow", "--", "--seed", "3"])


def test_torchspatial_numbers_cover_every_encoder_for_its_datasets():
    for dataset in ("fmow", "inat_2018"):
        published = encoder_table.torchspatial_results(dataset)
        assert set(encoder_table.ENCODERS) - {"spherical_harmonics"} <= set(published)
    assert encoder_table.torchspatial_results("inat_2018")["spheregrid"] == 73.45
    assert encoder_table.torchspatial_results("nabirds")["spheregrid"] == 82.13


def test_the_dataset_is_required_and_the_default_folder_is_in_the_repository(tmp_path, monkeypatch, capsys):
    with pytest.raises(SystemExit) as stop:
        encoder_table.main(["--collect_only"])
    assert stop.value.code == 2 and "--dataset" in capsys.readouterr().err
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(encoder_table, "write_table", lambda *args: ("md", "csv", ""))
    seen = {}

    def plan(*args):
        seen["model_dir"] = args[6]
        return []
    monkeypatch.setattr(encoder_table, "plan", plan)
    monkeypatch.setattr(encoder_table, "collect", lambda *args: None)
    monkeypatch.setattr(encoder_table, "assemble", lambda *args: None)
    encoder_table.main(["--dataset", "fmow", "--collect_only"])
    assert seen["model_dir"] == table_runs.DEFAULT_MODEL_ROOT / "encoders_fmow" / "released"


@pytest.mark.parametrize("table", [["encoders"], ["comparison"]])
@pytest.mark.parametrize("seeds, message", [(["0", "0"], "each seed once"), (["-1"], "every seed must be in")])
def test_bad_seeds_stop_collecting_before_a_table_is_written(tmp_path, table, seeds, message):
    with pytest.raises(ValueError, match=message):
        tables.main(table + ["--dataset", "fmow", "--collect_only", "--model_dir", str(tmp_path / "runs"),
                             "--seeds", *seeds])
    assert not (tmp_path / "runs").exists()


@pytest.fixture(scope="module")
def custom_runs(tmp_path_factory):
    """One encoder x both methods on your own data (test_own_data's table, which has unlabelled rows; random
    features: the table's mechanics do not need them to mean anything)."""
    root = tmp_path_factory.mktemp("custom")
    draw_images(root / "imgs", np.random.default_rng(0)).to_csv(root / "obs.csv", index=False)
    np.save(root / "feats.npy", np.random.default_rng(1).normal(size=(NUM_IMAGES, 8)).astype(np.float32))
    data = ["--data_table", str(root / "obs.csv"), "--features", str(root / "feats.npy")]
    argv = ["encoders", "--dataset", "custom", "--model_dir", str(root / "runs"), "--device", "cpu", "--encoders",
            "sphere", "--ratios", "0.5", "--seeds", "0", "--", *data, *TINY]
    return root, argv, tables.main(argv)


def test_your_own_data_runs_with_the_fmow_preset_and_no_published_column(custom_runs):
    root, _, frame = custom_runs
    assert "TorchSpatial 100%" not in frame.columns
    assert list(frame["encoder"]) == ["no_prior", "sphere"]
    assert frame["Sup. Only 50% mean"].between(0, 100).all() and (frame["CSP-MC-BLD 50% seeds"] == 1).all()
    results = [read_results(path) for path in sorted((root / "runs" / "seed0").glob("*.results.json"))]
    assert [r["params"]["unsuper_loss"] for r in results] == ["contsoftmax", "none"]
    fmow = dict(zip(table_runs.PRESETS[("released", "fmow")][::2], table_runs.PRESETS[("released", "fmow")][1::2]))
    for r in results:
        assert r["params"]["dataset"] == "custom" and r["params"]["spa_f_act"] == fmow["--spa_f_act"]
        assert r["params"]["simcse_weight"] == float(fmow["--simcse_weight"])
    markdown = (root / "runs" / "encoders_custom_released.md").read_text()
    assert "fmow's values: spa_f_act gelu" in markdown and "TorchSpatial" not in markdown


def test_your_own_data_runs_are_collected_not_run_again(custom_runs, monkeypatch):
    _, argv, frame = custom_runs
    _no_runs(monkeypatch)   # the table's unlabelled rows switch the class-balanced sampler off in every run
    pd.testing.assert_frame_equal(tables.main(argv), frame)
    split = argv.index("--")
    pd.testing.assert_frame_equal(tables.main(argv[:split] + ["--collect_only"] + argv[split:]), frame)


def test_your_own_data_needs_its_files_before_anything_runs(custom_runs, monkeypatch, tmp_path):
    root, argv, _ = custom_runs
    _no_runs(monkeypatch)
    split = argv.index("--")
    with pytest.raises(ValueError, match="--dataset custom needs --data_table"):
        tables.main(argv[:split])
    with pytest.raises(ValueError, match="--data_dir .* reads no dataset folder"):
        tables.main(argv[:split] + ["--data_dir", str(root)] + argv[split:])
    moved = [str(tmp_path / "no.npy") if word == str(root / "feats.npy") else word for word in argv]
    with pytest.raises(FileNotFoundError, match=f"nothing was run:\n  --features {tmp_path / 'no.npy'}"):
        tables.main(moved)


@pytest.mark.parametrize("table", [["encoders"], ["comparison"]])
@pytest.mark.parametrize("flags, message", [(["--lrr", "1"], "--lrr 1: not a flag of train_unsuper.py"),
                                            (["--lr", "nan"], "--lr must be a finite number")])
def test_bad_flags_for_the_runs_are_named_before_anything_is_read(tmp_path, table, flags, message):
    """They printed train_unsuper's 46-line usage titled tables.py, a TypeError traceback, or (collecting) wrote a
    table with exit 0."""
    (tmp_path / "runs").mkdir()
    with pytest.raises(ValueError, match=message):
        tables.main(table + ["--dataset", "fmow", "--collect_only", "--model_dir", str(tmp_path / "runs"), "--",
                             *flags])
    assert not list((tmp_path / "runs").iterdir())
