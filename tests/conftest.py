"""Shared test set-up: `main/` as the package csp, `benchmarks/` on the import path, the golden outputs of the
original code, shared synthetic data folders, one torch thread.

The golden outputs ship with the repository in a compact copy (`tests/golden/`, see its README.md), unpacked once
per test session into a temporary folder, so a fresh clone runs every golden test.
"""
import sys
from pathlib import Path

import pytest
import torch

import golden_copy

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "main"))
import as_package  # noqa: E402,F401  (main/ becomes the package csp and leaves sys.path)
sys.path.insert(0, str(ROOT / "benchmarks"))  # the benchmarks and drawing helpers, imported by their names
from csp.synthetic_data import write_synthetic_dataset  # noqa: E402


@pytest.fixture(scope="session")
def golden_dir(tmp_path_factory):
    """The golden folder (outputs of the original code on fixed inputs), rebuilt from `tests/golden/`."""
    return golden_copy.unpack(ROOT / "tests" / "golden", tmp_path_factory.mktemp("golden"))


def _files(folder):
    return {path: (path.stat().st_size, path.stat().st_mtime_ns) for path in sorted(folder.rglob("*"))}


@pytest.fixture(scope="session")
def synthetic_data_dir(tmp_path_factory):
    """`synthetic_data_dir(*datasets, **sizes)`: a data folder (for CSP_DATA_DIR or --data_dir) holding the
    synthetic `datasets` that `synthetic_data.write_synthetic_dataset(dataset, folder, **sizes)` writes. Written
    once per session for each set of arguments and shared by the tests that ask for it, so they must only read it:
    a file changed, added or removed there fails the session at its end."""
    written = {}

    def folder(*datasets, **sizes):
        key = (datasets, tuple(sorted(sizes.items())))
        if key not in written:
            root = tmp_path_factory.mktemp("synthetic_data")
            for dataset in datasets:
                write_synthetic_dataset(dataset, root, **sizes)
            written[key] = root, _files(root)
        return written[key][0]

    yield folder
    changed = [str(root) for root, files in written.values() if _files(root) != files]
    assert not changed, f"tests wrote into the shared synthetic data folders {changed}"


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """One intra-op torch thread for the whole session: the tests' tensors are small, and on a shared 2-core machine
    a second thread costs more in OpenMP start-up and waiting than it gains. Session-scoped, so that fixtures of
    every scope and the tests they serve compute with the same thread count (float sums depend on it)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
