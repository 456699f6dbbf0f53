"""One run at a time in a folder: an OS file lock on `{folder}/.csp-run.lock`, its holder recorded in
`.csp-run.owner.json`; released by the OS when the process dies.
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
    """The lock of `folder` (created if missing); `acquire()` / `release()` or a context manager; `name`,
    `what` and `fix` shape its files and the in-use error."""

    def __init__(self, folder, name=None, what=None, fix=None):
        self.folder = Path(folder)
        self.owner_file = self.folder / (OWNER_NAME if name is None else f"{name}.owner.json")
        self._lock = filelock.FileLock(self.folder / (LOCK_NAME if name is None else f"{name}.lock"), timeout=0)
        self.what = what or f"--model_dir {self.folder}"
        self.fix = fix or ("two runs in one folder would overwrite each other's checkpoints, log and results; wait for "
                           "it to end, or give this run another --model_dir")
        self._made = []  # the folders acquire() made, innermost first

    def acquire(self):
        """Take the lock without waiting, or raise ValueError naming the folder and the process that holds it."""
        self._made = [folder for folder in (self.folder, *self.folder.absolute().parents) if not folder.exists()]
        self.folder.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire()
        except filelock.Timeout:
            raise ValueError(f"{self.what} is in use by another run ({self._holder()}): {self.fix}") from None
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
        """Remove both files while still holding the lock, then unlock (safe: no run waits on the
        lock, so none holds the unlinked file)."""
        if self._lock.is_locked:
            self.owner_file.unlink(missing_ok=True)
            Path(self._lock.lock_file).unlink(missing_ok=True)
            self._lock.release()
            for folder in self._made:
                try:
                    folder.rmdir()
                except OSError:  # not empty: the run wrote something there
                    break

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
