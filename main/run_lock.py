"""One run at a time in a `--model_dir`: a lock on the folder, held from set-up to the end of the run.

Two runs in one folder share file names (checkpoints, log, results, few-shot subsets), so a second run would
overwrite or interleave the first's files. `RunLock(folder)` takes an operating-system file lock (`filelock`) on
`{folder}/.csp-run.lock` without waiting and records its holder (process id, host, start time, command line) in
`{folder}/.csp-run.owner.json`; a second run stops with a ValueError naming the folder and the first run's process.
The operating system releases the lock when a process dies, so a killed run never blocks the next.
"""
import json
import os
import socket
import sys
import time
from pathlib import Path

import filelock

LOCK_NAME = ".csp-run.lock"
OWNER_NAME = ".csp-run.owner.json"


class RunLock:
    """The lock of `folder` (created if missing); `acquire()` / `release()`, or use as a context manager."""

    def __init__(self, folder):
        self.folder = Path(folder)
        self.owner_file = self.folder / OWNER_NAME
        self._lock = filelock.FileLock(self.folder / LOCK_NAME, timeout=0)

    def acquire(self):
        """Take the lock, or raise ValueError naming the folder and the process that holds it."""
        self.folder.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire()
        except filelock.Timeout:
            raise ValueError(f"--model_dir {self.folder} is in use by another run ({self._holder()}): two runs in "
                             f"one folder would overwrite each other's checkpoints, log and results; wait for it to "
                             f"end, or give this run another --model_dir") from None
        owner = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                 "command": sys.argv}
        self.owner_file.write_text(json.dumps(owner) + "\n")
        return self

    def _holder(self):
        try:
            owner = json.loads(self.owner_file.read_text())
            return (f"process {owner['pid']} on {owner['host']}, started {owner['started']}: "
                    f"{' '.join(owner['command'])}")
        except (OSError, ValueError, KeyError, TypeError):
            return f"its process is not recorded in {self.owner_file}"

    def release(self):
        """Give the lock back (nothing if it is not held)."""
        if self._lock.is_locked:
            self.owner_file.unlink(missing_ok=True)
            self._lock.release()

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
