"""Shared test set-up: `main/` on the import path, the golden outputs of the original code, one torch thread.

The golden files live in `../shared/golden/` beside the repository (read-only). Where that folder is absent (a
user's fresh clone) the tests that need it are skipped; CI sets CSP_REQUIRE_GOLDEN=1 so that they fail instead.
"""
import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "main"))

SHARED = ROOT.parent / "shared"


def _shared_dir(sub):
    path = SHARED / sub
    if not path.is_dir():
        if os.environ.get("CSP_REQUIRE_GOLDEN") == "1":
            pytest.fail(f"{path} is missing (CSP_REQUIRE_GOLDEN=1)")
        pytest.skip(f"{path} is not here (it holds the original code's outputs)")
    return path


@pytest.fixture(scope="session")
def golden_dir():
    """`../shared/golden/`: outputs of the original code on fixed inputs."""
    return _shared_dir("golden")


@pytest.fixture(scope="session")
def shared_data_dir():
    """`../shared/data/`: the original `ocean_mask.npy` (tests only)."""
    return _shared_dir("data")


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """One intra-op torch thread for the whole session: the tests' tensors are small, and on a shared 2-core machine
    a second thread costs more in OpenMP start-up and waiting than it gains. Session-scoped, so that fixtures of
    every scope and the tests they serve compute with the same thread count (float sums depend on it)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
