"""Backfill from files: each NDJSON line (or a whole .json file) is one message body."""

from __future__ import annotations

import gzip
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from consumer.warehouse import FlushStats, ParquetWarehouse
from transforms.decode import DecodeRules, decode_body
from transforms.records import Origin
from transforms.rows import TableRows

LINE_SUFFIXES = (".ndjson", ".jsonl", ".ndjson.gz", ".jsonl.gz")
WHOLE_SUFFIXES = (".json", ".json.gz")


class BackfillInputError(ValueError):
    """A path that cannot be backfilled (missing, unreadable, unknown kind)."""


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
    commits: list[FlushStats] = field(default_factory=list, repr=False)

    def absorb(self, stats: FlushStats) -> None:
        self.events_written += stats.events
        self.duplicates_skipped += stats.duplicates.get("raw_events", 0)


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


def read_bodies(path: Path) -> Iterator[tuple[int, bytes]]:
    """(line number, body) pairs; a whole-document file is one body at line 1."""
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as fh:
        if path.name.endswith(WHOLE_SUFFIXES):
            yield 1, fh.read()
            return
        for number, line in enumerate(fh, start=1):
            yield number, line.rstrip(b"\r\n")


def backfill_files(
    paths: list[Path],
    warehouse: ParquetWarehouse,
    rules: DecodeRules,
    *,
    batch_rows: int,
    now_us: Callable[[], int],
    progress: Callable[[BackfillSummary, Path], None] | None = None,
    progress_every_s: float = 2.0,
) -> BackfillSummary:
    summary = BackfillSummary()
    started = time.monotonic()
    last_report = started
    rows = TableRows()
    ingested_us = now_us()  # one stamp per commit batch
    for path in expand_paths(paths):
        summary.files += 1
        name = str(path)
        for line, body in read_bodies(path):
            summary.bytes_read += len(body) + 1
            if not body.strip():
                summary.blank_lines += 1
                continue
            summary.bodies += 1
            result = decode_body(body, Origin("file", file=name, line=line), rules)
            summary.events_decoded += len(result.events)
            summary.ignored += len(result.ignored)
            summary.dead_lettered += len(result.dead_letters)
            rows.add(result, ingested_us)
            if len(rows) >= batch_rows:
                warehouse.write(rows)
                summary.absorb(warehouse.flush())
                rows, ingested_us = TableRows(), now_us()
            if progress is not None and time.monotonic() - last_report >= progress_every_s:
                last_report = time.monotonic()
                summary.seconds = last_report - started
                progress(summary, path)
    warehouse.write(rows)
    summary.absorb(warehouse.flush())
    summary.seconds = time.monotonic() - started
    return summary
