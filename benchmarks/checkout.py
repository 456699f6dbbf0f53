"""`import checkout` first: this checkout's `main/` becomes the package `csp`, as tests/conftest.py does."""
import sys
from pathlib import Path

MAIN = str(Path(__file__).resolve().parents[1] / "main")
sys.path.insert(0, MAIN)
import as_package  # noqa: E402,F401  (main/ becomes the package csp and leaves sys.path)

if MAIN in sys.path:  # as_package was imported before (by the tests): main/ must not shadow other packages
    sys.path.remove(MAIN)
