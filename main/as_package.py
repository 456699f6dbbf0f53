"""Import this folder as the package `csp` when one of its scripts is run directly (`python train_unsuper.py`).

The modules of `main/` import each other relatively (`from . import datasets`), so that they are `csp.datasets`,
`csp.models`, … and never shadow other packages with those generic names (Hugging Face's `datasets`, …). Installed
(`pip install -e .` or from a wheel) the folder is the package `csp`. A script run from here instead starts with
this folder at the front of `sys.path`; its first lines

    if not __package__:
        __package__ = __import__("as_package").PACKAGE

take the folder off `sys.path`, register it as the package `csp` (this checkout's copy, even where another copy is
installed) and make the script's relative imports resolve inside it. tests/conftest.py does the same.
"""
import importlib.util
import os
import sys

PACKAGE = "csp"
FOLDER = os.path.dirname(os.path.abspath(__file__))


def _register():
    loaded = sys.modules.get(PACKAGE)
    if loaded is not None and os.path.dirname(os.path.abspath(getattr(loaded, "__file__", "") or "")) == FOLDER:
        return
    spec = importlib.util.spec_from_file_location(PACKAGE, os.path.join(FOLDER, "__init__.py"),
                                                  submodule_search_locations=[FOLDER])
    package = importlib.util.module_from_spec(spec)
    sys.modules[PACKAGE] = package
    spec.loader.exec_module(package)


sys.path[:] = [entry for entry in sys.path if os.path.abspath(entry or os.curdir) != FOLDER]
_register()
