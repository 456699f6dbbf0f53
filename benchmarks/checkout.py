"""`import checkout` first: this checkout's `main/` becomes the package `csp`, as tests/conftest.py does."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "main"))
import as_package  # noqa: E402,F401  (main/ becomes the package csp and leaves sys.path)
