"""paths.get_paths: the original's defaults, environment overrides, and a clear error for unknown keys."""
import os
import subprocess
import sys

import pytest

from csp import paths


@pytest.fixture
def no_env(monkeypatch):
    monkeypatch.delenv("CSP_DATA_DIR", raising=False)
    monkeypatch.delenv("CSP_MASK_DIR", raising=False)


@pytest.mark.parametrize("dataset", paths.DATASETS)
def test_default_data_dirs_are_the_originals_relative_to_main(no_env, dataset):
    expected = paths.MAIN_DIR.parent / "geo_prior_data_csp" / "data" / dataset
    assert paths.get_paths(f"{dataset}_data_dir") == expected


def test_default_mask_dir_is_data_beside_main(no_env):
    assert paths.get_paths("mask_dir") == paths.MAIN_DIR.parent / "data"


@pytest.mark.parametrize("dataset", paths.DATASETS)
def test_csp_data_dir_holds_the_per_dataset_folders(monkeypatch, tmp_path, dataset):
    monkeypatch.setenv("CSP_DATA_DIR", str(tmp_path))
    assert paths.get_paths(f"{dataset}_data_dir") == tmp_path / dataset


def test_csp_mask_dir_overrides_the_mask_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("CSP_MASK_DIR", str(tmp_path))
    assert paths.get_paths("mask_dir") == tmp_path


def test_empty_environment_variable_means_default(monkeypatch, no_env):
    monkeypatch.setenv("CSP_DATA_DIR", "")
    assert paths.get_paths("fmow_data_dir") == paths.DEFAULT_DATA_DIR / "fmow"


def test_unknown_key_lists_the_keys():
    with pytest.raises(ValueError) as err:
        paths.get_paths("syntconsband_data_dir")
    message = str(err.value)
    assert "syntconsband_data_dir" in message
    for key in paths.KEYS:
        assert key in message


def test_how_to_set_names_the_variable_and_the_key(monkeypatch, tmp_path):
    monkeypatch.setenv("CSP_DATA_DIR", str(tmp_path))
    hint = paths.how_to_set("inat_2018_data_dir")
    assert "CSP_DATA_DIR" in hint and "inat_2018_data_dir" in hint and str(tmp_path / "inat_2018") in hint
    assert "CSP_MASK_DIR" in paths.how_to_set("mask_dir")


def test_a_relative_csp_data_dir_is_shown_absolute_with_the_folder_it_was_resolved_from(monkeypatch, tmp_path):
    """The run scripts cd into main/, so `CSP_DATA_DIR=walkdata bash run-….sh` looks in main/walkdata: say so."""
    monkeypatch.chdir(paths.MAIN_DIR)
    monkeypatch.setenv("CSP_DATA_DIR", "walkdata")
    assert paths.get_paths("fmow_data_dir") == paths.MAIN_DIR / "walkdata" / "fmow"
    hint = paths.how_to_set("fmow_data_dir")
    for part in (str(paths.MAIN_DIR / "walkdata" / "fmow"), "CSP_DATA_DIR=walkdata is relative",
                 f"resolved from main/ ({paths.MAIN_DIR}, where the run scripts start)", "absolute path"):
        assert part in hint
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CSP_MASK_DIR", "masks")
    assert paths.get_paths("mask_dir") == tmp_path / "masks"
    hint = paths.how_to_set("mask_dir")
    assert "CSP_MASK_DIR=masks is relative" in hint and f"resolved from the current directory ({tmp_path})" in hint


def test_a_failed_write_names_the_path_and_leaves_no_temporary(tmp_path):
    """A full disk gave an OSError without the path."""
    target = tmp_path / "results.json"

    def full_disk(handle):
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError) as err:
        paths.atomic_write(target, full_disk)
    assert err.value.filename == str(target) and err.value.errno == 28
    assert list(tmp_path.iterdir()) == []


def test_temporaries_of_killed_processes_are_removed_but_not_those_of_live_ones(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    (tmp_path / "sub").mkdir()
    stale = [tmp_path / f".model.pth.tar.{dead_pid}.0123abcd.tmp", tmp_path / f"sub/.x.npy.{dead_pid}.89abcdef.tmp"]
    live = tmp_path / f".model.pth.tar.{os.getpid()}.0123abcd.tmp"
    other = tmp_path / ".notes.tmp"
    for path in stale + [live, other]:
        path.write_text("partial")
    assert sorted(paths.remove_stale_temporaries(tmp_path)) == sorted(stale)
    assert live.exists() and other.exists() and not any(path.exists() for path in stale)
