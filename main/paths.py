"""Where the data lives: `get_paths(key)` for `{dataset}_data_dir` and `mask_dir`; defaults
`../geo_prior_data_csp/data/<dataset>/` and `../data/` relative to `main/`, overridden by CSP_DATA_DIR and
CSP_MASK_DIR.
"""
import importlib.util
import os
import re
import secrets
from pathlib import Path

DATASETS = ("inat_2018", "inat_2017", "fmow", "birdsnap", "nabirds", "yfcc")
MAIN_DIR = Path(__file__).resolve().parent
DEFAULT_DATA_DIR = MAIN_DIR.parent / "geo_prior_data_csp" / "data"
DEFAULT_MASK_DIR = MAIN_DIR.parent / "data"
KEYS = tuple(f"{name}_data_dir" for name in DATASETS) + ("mask_dir",)
TEMPORARY_NAME = re.compile(r"\..+\.(\d+)\.[0-9a-f]{8}\.tmp")


def _variable(key):
    return "CSP_MASK_DIR" if key == "mask_dir" else "CSP_DATA_DIR"


def get_paths(key):
    """The absolute folder of `key`, one of `KEYS`; ValueError listing the keys for any other."""
    if key not in KEYS:
        raise ValueError(f"unknown paths key {key!r}; the keys are: {', '.join(KEYS)}")
    if key == "mask_dir":
        return Path(os.environ.get("CSP_MASK_DIR") or DEFAULT_MASK_DIR).absolute()
    root = os.environ.get("CSP_DATA_DIR") or DEFAULT_DATA_DIR
    return Path(root).absolute() / key[: -len("_data_dir")]


def _relative_note(key):
    variable = _variable(key)
    value = os.environ.get(variable)
    if not value or Path(value).is_absolute():
        return ""
    cwd = Path.cwd()
    where = f"main/ ({cwd}, where the run scripts start)" if cwd == MAIN_DIR else f"the current directory ({cwd})"
    return (f"; {variable}={value} is relative, so it was resolved from {where} — give an absolute path, e.g. "
            f"{variable}=\"$PWD/{value}\" typed in the folder that holds {value}")


def how_to_set(key):
    """One sentence telling a user how to point `key` at their files (for error messages)."""
    if key == "mask_dir":
        hint = "set CSP_MASK_DIR to the folder holding ocean_mask.npy (paths.py key 'mask_dir'"
    else:
        hint = (f"set CSP_DATA_DIR to the folder holding the '{key[: -len('_data_dir')]}/' data folder "
                f"(paths.py key '{key}'")
    return f"{hint}, now {get_paths(key)}{_relative_note(key)})"


def atomic_write(path, write):
    """Call `write(handle)` on a temporary binary file beside `path`, fsync and rename it over `path`."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(temporary, "xb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except OSError as err:
        temporary.unlink(missing_ok=True)
        if err.filename is None:
            raise OSError(err.errno, err.strerror or str(err), str(path)) from err
        raise
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _process_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def remove_stale_temporaries(folder):
    """Remove `atomic_write`'s temporary files under `folder` whose process is gone; returns their paths."""
    removed = []
    for temporary in Path(folder).rglob(".*.tmp"):
        match = TEMPORARY_NAME.fullmatch(temporary.name)
        if match and temporary.is_file() and not _process_alive(int(match[1])):
            temporary.unlink(missing_ok=True)
            removed.append(temporary)
    return removed


def package_file(package, *parts, install=None):
    """Path of a data file of an installed package (not imported); else FileNotFoundError naming
    `install`."""
    try:
        spec = importlib.util.find_spec(package)
    except ModuleNotFoundError:
        spec = None
    if spec is None or not spec.submodule_search_locations:
        how = f"install it: {install}" if install else "install the project's requirements"
        raise FileNotFoundError(f"the package providing {package} is not installed; {how} (README, 'Install')")
    path = Path(list(spec.submodule_search_locations)[0], *parts)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: reinstall the package that provides {package}")
    return path
