"""Shared test set-up: `main/` on the import path, the golden outputs of the original code, one torch thread.

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


@pytest.fixture(scope="session")
def golden_dir(tmp_path_factory):
    """The golden folder (outputs of the original code on fixed inputs), rebuilt from `tests/golden/`."""
    return golden_copy.unpack(ROOT / "tests" / "golden", tmp_path_factory.mktemp("golden"))


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """One intra-op torch thread for the whole session: the tests' tensors are small, and on a shared 2-core machine
    a second thread costs more in OpenMP start-up and waiting than it gains. Session-scoped, so that fixtures of
    every scope and the tests they serve compute with the same thread count (float sums depend on it)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
