"""Backfill from files: each NDJSON line (or a whole .json file) is one message body.

The input is cut into newline-aligned chunks of ~4 MiB (backfill/blocks.py). Small
inputs are decoded and written in this process. Large ones go to decode processes
(backfill/pool.py) that decode the chunks into Arrow batches and write them; this
process decides, in input order, which rows are new, so the stored rows are exactly
those of a single process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from consumer.backfill.blocks import expand_paths
from consumer.backfill.chunks import Chunk, chunks_of, decode_chunk
from consumer.backfill.pool import ShardPool
from consumer.clock import mono_s
from consumer.storage.warehouse import FlushStats, ParquetWarehouse
from consumer.tuning import no_cyclic_gc
from transforms.decode import DecodeRules
from transforms.fastpath import LineCounts

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
    started = mono_s()
    last_report = started
    files = expand_paths(paths)
    summary.files = len(files)
    summary.workers = choose_workers(files, workers)
    current = files[0] if files else Path()

    def chunks_noting_their_file() -> Iterator[Chunk]:
        nonlocal current  # progress names the file being read
        for chunk in chunks_of(files, rules, now_us):
            current = Path(chunk.block.file)
            yield chunk

    chunks = chunks_noting_their_file()

    def report() -> None:
        nonlocal last_report
        if progress is not None and mono_s() - last_report >= progress_every_s:
            last_report = mono_s()
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
        # decode processes keep what they decode and write it themselves (backfill/pool.py);
        # what this loop allocates (chunk keys, key arrays) forms no cycles
        with no_cyclic_gc(), ShardPool(summary.workers, warehouse, READ_AHEAD) as pool:
            pending_rows = 0
            for part in pool.decode(chunks):
                summary.add(part.counts, part.bytes_read)
                pending_rows += part.rows
                if pending_rows >= batch_rows:
                    summary.absorb(pool.commit(wait=False))  # answers come in as it goes on
                    pending_rows = 0
                report()
            summary.absorb(pool.commit())
    summary.seconds = mono_s() - started
    return summary
