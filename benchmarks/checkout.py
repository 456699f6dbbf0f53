"""`import checkout` first: this checkout's `main/` becomes the package `csp`, as tests/conftest.py does;
`context()` says what a measurement ran on; `count` is the type of the benchmarks' counts of steps and runs."""
import argparse
import datetime
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAIN = str(ROOT / "main")
sys.path.insert(0, MAIN)
import as_package  # noqa: E402,F401  (main/ becomes the package csp and leaves sys.path)

if MAIN in sys.path:  # as_package was imported before (by the tests): main/ must not shadow other packages
    sys.path.remove(MAIN)


def context():
    """One line: the date, this checkout's commit (+ if changed), the CPU, the cores, the memory, the load average."""
    def git(*args):
        done = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""
    commit = (git("rev-parse", "--short", "HEAD") or "no git") + ("+" if git("status", "--porcelain", "-uno") else "")
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), cpu)
    except OSError:
        pass
    memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2 ** 30
    load = " ".join(f"{value:.1f}" for value in os.getloadavg())
    return (f"{datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}, commit {commit}, {cpu}, {os.cpu_count()} "
            f"CPUs, {memory:.0f} GiB memory, load average {load} (1, 5, 15 min)")


def count(text):
    """An integer of at least 1 (argparse type)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give a whole number of at least 1")
    return value
