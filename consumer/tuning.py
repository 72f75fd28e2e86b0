"""Process tuning, all in one place: environment, garbage collector, allocators.

Each knob was measured (figures in bench/NOTES.md); none changes what is stored.

- `prepare_environment` runs first in `amlwh`, before numpy or pyarrow are imported;
  the backfill's decode processes inherit the environment it sets.
- `tune_live_worker` runs once when `amlwh run` starts.
- `tune_short_command` runs in `amlwh query` and `views` once their imports are done.
- `tune_decode_process` runs once in each backfill decode process.
- `release_free_memory` gives freed heap back to the OS (the live worker, per flush).
- `no_cyclic_gc` turns the cyclic collector off around acyclic bulk work.

pyarrow is imported inside the functions that configure it, not at the top: the
environment must be set before its first import, and `amlwh --help` should not pay for it.
"""

from __future__ import annotations

import ctypes
import gc
import os
import sys
from contextlib import contextmanager
from typing import Iterator


def prepare_environment() -> None:
    """Defaults the operator's environment may override (an explicit value wins).

    - OPENBLAS_NUM_THREADS=1: numpy's OpenBLAS starts a spinning thread per core at
      import, ~0.1 s of CPU per process for nothing (amlwh does no linear algebra).
    - ARROW_DEFAULT_MEMORY_POOL=system: the Parquet writer and compute kernels allocate
      from Arrow's C++ default pool (mimalloc unless told otherwise); a long-running
      worker with bursty flushes holds less through glibc at the same throughput.
    """
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")


def child_environment(overrides: dict[str, str]) -> dict[str, str]:
    """This process's environment with `overrides`, for a child `amlwh` command."""
    return {**os.environ, **overrides}


def tune_live_worker() -> None:
    """pyarrow's own pool to the system allocator too, and a collector that does not walk
    tens of thousands of young, acyclic decoded rows every 700 allocations. What start-up
    allocated is moved out of the collector's sight (gc.freeze)."""
    import pyarrow as pa

    pa.set_memory_pool(pa.system_memory_pool())
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)


def tune_short_command() -> None:
    """What the imports made lives until the process exits, and the collections of the
    interpreter's shutdown walked all of it: ~30 ms after DuckDB's import, a tenth of a
    small query. Frozen, they skip it (gc.freeze; what the command then makes is still
    collected)."""
    gc.freeze()


# glibc mallopt parameters
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
_DECODE_HEAP_SLACK = 64 << 20


def tune_decode_process() -> None:
    """Every backfill chunk allocates and frees ~10 MB of row objects, Arrow buffers and
    Parquet buffers. By default glibc serves the large ones with fresh mmaps and hands freed
    heap back to the OS at once, so every chunk page-faults its memory in again. So: Arrow
    allocates through glibc, and glibc keeps up to 64 MB of freed heap (no mmap below
    64 MB, no trim below twice that) for the next chunk. Memory stays bounded by the
    largest chunk plus that slack. Not glibc (musl, macOS): nothing is tuned."""
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is None:
        return
    import pyarrow as pa

    pa.set_memory_pool(pa.system_memory_pool())
    mallopt(_M_MMAP_THRESHOLD, _DECODE_HEAP_SLACK)
    mallopt(_M_TRIM_THRESHOLD, 2 * _DECODE_HEAP_SLACK)
    mallopt(_M_TOP_PAD, _DECODE_HEAP_SLACK)


def _malloc_trim():
    if not sys.platform.startswith("linux"):
        return None
    # the process's own symbols, libc's among them (find_library would run ldconfig: ~20 ms
    # at every start of every command)
    return getattr(ctypes.CDLL(None), "malloc_trim", None)  # absent on musl


_TRIM = _malloc_trim()


def release_free_memory() -> None:
    """Return every whole free page of every glibc arena to the OS (a no-op elsewhere).

    The live worker's decode thread allocates and frees ~20 KB of short-lived objects per
    event, and glibc keeps what a non-main thread's arena frees for reuse instead of
    returning it: resident size grew ~4 KB per event held although the objects really
    held take a fraction of that. A trim costs a few milliseconds."""
    if _TRIM is not None:
        _TRIM(0)


@contextmanager
def no_cyclic_gc() -> Iterator[None]:
    """Cyclic GC off inside, restored after. For code whose objects form no reference
    cycles and die by refcount, yet whose allocations keep triggering collections that
    traverse them all (a decode chunk: ~1 us/event)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
