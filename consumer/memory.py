"""Give freed heap memory back to the OS (glibc; a no-op elsewhere).

Measured (README, "Live worker"): the decode thread allocates and frees ~20 KB
of short-lived objects per event, and glibc keeps what a non-main thread's
arena frees for reuse instead of returning it, so the worker's resident size
grew by ~4 KB per event held although the objects it really holds take a
fraction of that. `malloc_trim(0)` returns every whole free page in every
arena; after each flush it costs a few milliseconds.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys


def _malloc_trim():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    return getattr(libc, "malloc_trim", None)  # absent on musl


_TRIM = _malloc_trim()


def release_free_memory() -> None:
    if _TRIM is not None:
        _TRIM(0)
