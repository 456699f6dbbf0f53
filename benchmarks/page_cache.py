"""The page cache of a data folder, for benchmarks that time what a user meets: `sync` its files to the disk (no
write-back left to run during the timing), `evict` them (a cold start), `resident` (the share of their pages cached)."""
import ctypes
import mmap
import os
from pathlib import Path

import numpy as np

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]


def files(folder):
    """The regular files under `folder` (symbolic links resolved, each once)."""
    return sorted({path.resolve() for path in Path(folder).rglob("*") if path.is_file()})


def sync(folder):
    """fsync every file under `folder`: their dirty pages are on the disk when this returns."""
    for path in files(folder):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def evict(folder):
    """Sync, then drop the cached pages of every file under `folder` (pages another process maps stay)."""
    sync(folder)
    for path in files(folder):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def resident(folder):
    """Share of the pages of the files under `folder` that are in the page cache (mincore), 0–1."""
    cached = total = 0
    for path in files(folder):
        size = path.stat().st_size
        if size == 0:
            continue
        pages = -(-size // mmap.PAGESIZE)
        fd = os.open(path, os.O_RDONLY)
        try:
            address = _libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
            if address in (None, ctypes.c_void_p(-1).value):
                raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()), str(path))
            vector = (ctypes.c_ubyte * pages)()
            try:
                if _libc.mincore(address, size, vector) != 0:
                    raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()), str(path))
            finally:
                _libc.munmap(address, size)
        finally:
            os.close(fd)
        cached += int((np.frombuffer(vector, np.uint8) & 1).sum())
        total += pages
    return cached / total if total else 0.0
