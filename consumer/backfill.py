"""Backfill from files: each NDJSON line (or a whole .json file) is one message body.

The input is cut into newline-aligned chunks of ~4 MiB (consumer/blocks.py). Small
inputs are decoded and written in this process. Large ones go to decode processes
(consumer/shards.py) that decode the chunks into Arrow batches and write them; this
process decides, in input order, which rows are new, so the stored rows are exactly
those of a single process.
"""

from __future__ import annotations

import ctypes
import gc
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import pyarrow as pa

from consumer.batch import ArrowBatch, to_arrow
from consumer.blocks import Block, expand_paths, read_blocks
from consumer.shards import ShardPool
from consumer.warehouse import FlushStats, ParquetWarehouse
from transforms.decode import DecodeRules
from transforms.fastpath import LineCounts, decode_lines

# Chunks sent to each decode process ahead of the one the parent waits for. The
# processes write the files themselves now, so a commit no longer leaves them idle
# while the parent writes: 2 keeps them busy (1M events: same CPU as 6) and each
# process ~70 MB smaller at its peak.
READ_AHEAD = 2
PARALLEL_MIN_BYTES = 16 << 20  # below this, starting worker processes costs more than it saves


@dataclass
class BackfillSummary:
    files: int = 0
    bodies: int = 0
    blank_lines: int = 0
    events_decoded: int = 0
    events_written: int = 0
    duplicates_skipped: int = 0
    ignored: int = 0
    dead_lettered: int = 0
    bytes_read: int = 0
    seconds: float = 0.0
    workers: int = 0

    def add(self, counts: LineCounts, bytes_read: int) -> None:
        self.bodies += counts.bodies
        self.blank_lines += counts.blank_lines
        self.events_decoded += counts.events
        self.ignored += counts.ignored
        self.dead_lettered += counts.dead_letters
        self.bytes_read += bytes_read

    def absorb(self, stats: FlushStats) -> None:
        self.events_written += stats.events
        self.duplicates_skipped += stats.duplicates.get("raw_events", 0)


@dataclass
class Chunk:
    """One decode task: a block with the rules and the ingest stamp of its rows."""

    block: Block
    rules: DecodeRules
    ingested_us: int


@dataclass
class DecodedChunk:
    batch: ArrowBatch
    counts: LineCounts
    bytes_read: int


def _chunks(files: list[Path], rules: DecodeRules, now_us: Callable[[], int]) -> Iterator[Chunk]:
    for path in files:
        for block in read_blocks(path):
            yield Chunk(block, rules, now_us())


@contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """Cyclic GC off inside, restored after. For code whose objects form no reference
    cycles and die by refcount, yet whose allocations keep triggering collections that
    traverse them all."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def decode_chunk(chunk: Chunk) -> DecodedChunk:
    """Decode one chunk of bodies into an Arrow batch (runs in a worker process)."""
    # The chunk's objects are parsed JSON and row tuples: collections cost ~1 us/event
    # (6%) measured. Collect only outside the chunk.
    with _no_cyclic_gc():
        return _decode_chunk(chunk)


def _decode_chunk(chunk: Chunk) -> DecodedChunk:
    block = chunk.block
    rows, counts = decode_lines(block.bodies(), block.file, block.first_line, chunk.rules,
                                chunk.ingested_us)
    return DecodedChunk(to_arrow(rows), counts, block.size)


# glibc mallopt parameters
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
_WORKER_HEAP_SLACK = 64 << 20


def _decode_worker_setup() -> None:
    """Runs once in each decode process. Every chunk allocates and frees ~10 MB of
    row objects, Arrow buffers and Parquet buffers. By default glibc serves the large
    ones with fresh mmaps and hands freed heap back to the OS at once, and Arrow's
    mimalloc pool purges its freed pages too, so every chunk page-faults its memory in
    again: measured 4 us/event of system time in the workers, and Arrow conversion
    1.5-2 us/event slower. So: Arrow allocates through glibc, and glibc
    keeps up to 64 MB of freed heap (no mmap below 64 MB, no trim below 2x that) for
    the next chunk. The worker's memory stays bounded by its largest chunk plus that
    slack. Not glibc (musl, macOS): mallopt is missing and nothing is tuned."""
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is None:
        return
    pa.set_memory_pool(pa.system_memory_pool())
    mallopt(_M_MMAP_THRESHOLD, _WORKER_HEAP_SLACK)
    mallopt(_M_TRIM_THRESHOLD, 2 * _WORKER_HEAP_SLACK)
    mallopt(_M_TOP_PAD, _WORKER_HEAP_SLACK)


def choose_workers(files: list[Path], requested: int) -> int:
    if requested > 0:
        return requested
    size = sum(p.stat().st_size for p in files)
    return 1 if size < PARALLEL_MIN_BYTES else max(1, os.cpu_count() or 1)


def backfill_files(
    paths: list[Path],
    warehouse: ParquetWarehouse,
    rules: DecodeRules,
    *,
    batch_rows: int,
    now_us: Callable[[], int],
    workers: int = 0,
    progress: Callable[[BackfillSummary, Path], None] | None = None,
    progress_every_s: float = 2.0,
) -> BackfillSummary:
    summary = BackfillSummary()
    started = time.monotonic()
    last_report = started
    files = expand_paths(paths)
    summary.files = len(files)
    summary.workers = choose_workers(files, workers)
    current = files[0] if files else Path()

    def chunks_noting_their_file() -> Iterator[Chunk]:
        nonlocal current  # progress names the file being read
        for chunk in _chunks(files, rules, now_us):
            current = Path(chunk.block.file)
            yield chunk

    chunks = chunks_noting_their_file()

    def report() -> None:
        nonlocal last_report
        if progress is not None and time.monotonic() - last_report >= progress_every_s:
            last_report = time.monotonic()
            summary.seconds = last_report - started
            progress(summary, current)

    if summary.workers <= 1:
        for decoded in map(decode_chunk, chunks):
            summary.add(decoded.counts, decoded.bytes_read)
            warehouse.write(decoded.batch)
            if warehouse.pending_rows >= batch_rows:
                summary.absorb(warehouse.flush())
            report()
        summary.absorb(warehouse.flush())
    else:
        # decode processes keep what they decode and write it themselves (consumer.shards);
        # what this loop allocates (chunk keys, key arrays) forms no cycles
        with _no_cyclic_gc(), ShardPool(summary.workers, warehouse, READ_AHEAD) as pool:
            pending_rows = 0
            for part in pool.decode(chunks):
                summary.add(part.counts, part.bytes_read)
                pending_rows += part.rows
                if pending_rows >= batch_rows:
                    summary.absorb(pool.commit(wait=False))  # answers come in as it goes on
                    pending_rows = 0
                report()
            summary.absorb(pool.commit())
    summary.seconds = time.monotonic() - started
    return summary
