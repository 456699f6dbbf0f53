"""Run a script of `main/` directly with its folder imported as the package `csp` (the folder leaves
`sys.path`, where its generic module names would shadow other packages):

    if not __package__:
        __package__ = __import__("as_package").PACKAGE
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
