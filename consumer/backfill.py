"""Backfill from files: each NDJSON line (or a whole .json file) is one message body.

The input is cut into newline-aligned chunks of ~4 MiB. Small inputs are decoded and
written in this process. Large ones go to decode processes (consumer/shards.py) that
decode the chunks into Arrow batches and write them; this process decides, in input
order, which rows are new, so the stored rows are exactly those of a single process.
"""

from __future__ import annotations

import ctypes
import gc
import gzip
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pyarrow as pa

from consumer.batch import ArrowBatch, to_arrow
from consumer.errors import BackfillInputError
from consumer.shards import ShardPool
from consumer.warehouse import FlushStats, ParquetWarehouse
from transforms.decode import DecodeRules
from transforms.fastpath import LineCounts, decode_lines

LINE_SUFFIXES = (".ndjson", ".jsonl", ".ndjson.gz", ".jsonl.gz")
WHOLE_SUFFIXES = (".json", ".json.gz")
CHUNK_BYTES = 4 << 20  # ~2,700 bodies of 1.5 KB per decode task
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
class Block:
    """A run of whole lines of one file (or a whole-document file), undecoded.

    A block of a plain file carries only where it is (`start`, `length`): the decode
    process reads it itself, so the bytes are copied once, from the page cache, instead
    of being read by the parent, pickled, piped and unpickled (~1 us/event of CPU).
    Blocks of gzip files and whole documents carry their bytes."""

    file: str
    first_line: int
    data: bytes | None
    whole_document: bool
    start: int = 0
    length: int = 0

    @property
    def size(self) -> int:
        return self.length if self.data is None else len(self.data)

    def load(self) -> bytes:
        if self.data is not None:
            return self.data
        try:
            fd = os.open(self.file, os.O_RDONLY)
            try:
                data = os.pread(fd, self.length, self.start)
            finally:
                os.close(fd)
        except OSError as exc:
            raise BackfillInputError(
                f"{self.file}: cannot read lines from {self.first_line} on: {exc.strerror}") from None
        if len(data) != self.length:
            raise BackfillInputError(
                f"{self.file}: shorter than when it was scanned (a file must not change while "
                f"it is backfilled); lines from {self.first_line} were not read")
        return data

    def bodies(self) -> list[bytes] | list[memoryview]:
        """The block's lines without their line ends, one per line, blank ones included."""
        data = self.load()
        if self.whole_document:
            return [data]
        return _line_views(data)


def _line_views(data: bytes) -> list[memoryview]:
    """Views of data's lines, without "\n" or "\r\n"; a last line without a newline counts.

    Views, not bytes: orjson parses a view as it is, and the payload column joins them, so
    no line is copied into a bytes object of its own (split took ~420 ns a 1.5 KB line,
    these ~250, and orjson reads a view of the block ~8% faster than a fresh copy)."""
    if not data:
        return []
    codes = np.frombuffer(data, np.uint8)
    ends = np.flatnonzero(codes == 10)
    if data[-1] != 10:  # the last line has no newline
        ends = np.append(ends, len(data))
    starts = np.empty_like(ends)
    starts[0] = 0
    starts[1:] = ends[:-1] + 1
    ends -= (ends > starts) & (codes[ends - 1] == 13)  # "\r\n" line ends
    view = memoryview(data)
    return [view[start:end] for start, end in zip(starts.tolist(), ends.tolist())]


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


def expand_paths(paths: list[Path]) -> list[Path]:
    """Files to read, in a stable order; directories are searched recursively."""
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(
                p for p in path.rglob("*") if p.is_file() and p.name.endswith(LINE_SUFFIXES + WHOLE_SUFFIXES)
            )
            if not found:
                raise BackfillInputError(f"{path}: directory holds no .ndjson/.jsonl/.json files")
            out.extend(found)
        elif path.is_file():
            if not path.name.endswith(LINE_SUFFIXES + WHOLE_SUFFIXES):
                raise BackfillInputError(
                    f"{path}: unknown file kind; expected .ndjson, .jsonl or .json (optionally .gz)"
                )
            out.append(path)
        else:
            raise BackfillInputError(f"{path}: no such file or directory")
    return out


def read_blocks(path: Path) -> Iterator[Block]:
    """Newline-aligned blocks of a file: callers never iterate single lines in Python."""
    name = str(path)
    if path.name.endswith(LINE_SUFFIXES) and not path.name.endswith(".gz"):
        yield from _scan_blocks(path)
        return
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as fh:
        if path.name.endswith(WHOLE_SUFFIXES):
            yield Block(name, 1, fh.read(), True)
            return
        line, carry = 1, b""
        while True:
            block = fh.read(CHUNK_BYTES)
            if not block:
                break
            data = carry + block
            cut = data.rfind(b"\n") + 1
            if cut == 0:  # one line longer than a block: keep reading
                carry = data
                continue
            carry = data[cut:]
            yield Block(name, line, data[:cut], False)
            line += _newlines(data, cut)
        if carry:
            yield Block(name, line, carry, False)


def _newlines(data: bytes | bytearray, end: int) -> int:
    """Newlines in data[:end]. numpy's vectorized compare: bytes.count takes ~1 ms per 4 MB
    block, this ~0.2 ms, and the parent counts every line of every file."""
    return int(np.count_nonzero(np.frombuffer(data, np.uint8, end) == 10))


def _scan_blocks(path: Path) -> Iterator[Block]:
    """Blocks of a plain line file by position. The parent only looks for newlines (block
    ends, line numbers) in one reused buffer; the decode processes read the bytes."""
    name = str(path)
    buf = bytearray(CHUNK_BYTES)
    start = filled = 0  # file offset of buf[0]; bytes of buf holding file data
    line = 1
    with open(path, "rb", buffering=0) as fh:
        while True:
            got = fh.readinto(memoryview(buf)[filled:])
            filled += got
            if not got:  # end of file: what is left is the last block
                if filled:
                    yield Block(name, line, None, False, start, filled)
                return
            cut = buf.rfind(b"\n", 0, filled) + 1
            if cut == 0:  # no newline yet: one line longer than the buffer
                if filled == len(buf):
                    buf.extend(bytes(len(buf)))
                continue
            yield Block(name, line, None, False, start, cut)
            line += _newlines(buf, cut)
            buf[:filled - cut] = buf[cut:filled]  # the partial last line moves to the front
            start, filled = start + cut, filled - cut


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
