"""Provisional files: what the live worker's reorder buffers hold, visible to queries.

The reorder buffer holds each event until the partition's watermark passes it
(`[ordering] max_lateness_s`, 30 s by default), so a view fed only by committed
events lags live traffic by that much. Stream processors answer this with early
(speculative) results next to the final ones; here, at each flush, a worker
writes what all its partitions' buffers hold as one new Parquet file per table:
`<warehouse>/_provisional/<table>/<instance>-<version>.parquet`. Query
connections read them next to the committed files with `provisional = true`,
and the dedupe views rank committed copies first, so an event counts once
whether it is buffered, committed, or both for a moment.

Files are immutable, like committed ones: DuckDB may open a file more than
once per query, so a file rewritten in place can fail a reader mid-scan. A
superseded version is deleted only after `grace_s`, so a query that listed it
can still read it; every row of an old version is a real event, and the dedupe
views already count it once. Each table folder keeps an empty `_anchor.parquet`
so its glob always matches something. A crashed worker's files stay visible
until the partition's next owner has re-read those events, and are swept by
any worker once older than `stale_s` (live workers touch theirs every
`heartbeat_s`). Nothing here is durable state; stock tools reading
`<warehouse>/<table>/` see committed rows only.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from consumer.batch import OWNER_COLUMN, to_arrow
from consumer.sqlfiles import PARTITION_COLUMN, table_schemas
from transforms.rows import EVENT_TABLES, EventRows, TableRows

PROVISIONAL_DIR = "_provisional"
PROVISIONAL_TABLES = ("raw_events",) + EVENT_TABLES
ANCHOR = "_anchor.parquet"


def _schema(name: str) -> pa.Schema:
    return table_schemas()[name].append(pa.field(PARTITION_COLUMN, pa.date32()))


def provisional_glob(root: Path, name: str) -> Path | None:
    """The glob of a table's provisional files, or None when no worker ever wrote one."""
    folder = Path(root) / PROVISIONAL_DIR / name
    return folder / "*.parquet" if (folder / ANCHOR).exists() else None


class ProvisionalFiles:
    """One worker process's provisional files. Not thread-safe: one writer thread uses it."""

    def __init__(self, root: Path, compression: str, *, grace_s: float = 15.0,
                 stale_s: float = 300.0, heartbeat_s: float = 60.0) -> None:
        self.root = Path(root) / PROVISIONAL_DIR
        self.compression = compression
        self.grace_s, self.stale_s, self.heartbeat_s = grace_s, stale_s, heartbeat_s
        self.instance = uuid.uuid4().hex[:12]
        self._version = 0
        self._current: list[Path] = []
        self._superseded: list[tuple[float, list[Path]]] = []  # (superseded at, files)
        self._touched = 0.0
        self._swept = float("-inf")

    def publish(self, partitions: Iterable[list[EventRows]], now: float) -> None:
        """Write a new version holding these partitions' buffered events, then retire old ones.
        `now` is wall-clock seconds (file mtimes are compared with it)."""
        self._version += 1
        stem = f"{self.instance}-{self._version:08d}"
        writers: dict[str, tuple[pq.ParquetWriter, Path]] = {}
        try:
            for name in PROVISIONAL_TABLES:
                folder = self.root / name
                folder.mkdir(parents=True, exist_ok=True)
                self._anchor(folder, name)
                temp = folder / f".{stem}.tmp"
                writers[name] = (pq.ParquetWriter(temp, _schema(name), compression=self.compression), temp)
            for held in partitions:  # one row group per partition: memory is one partition's rows
                tables = _tables(held)
                for name, table in tables.items():
                    writers[name][0].write_table(table)
        except BaseException:
            for writer, temp in writers.values():
                writer.close()
                temp.unlink(missing_ok=True)
            raise
        files = []
        for name, (writer, temp) in writers.items():
            writer.close()
            final = temp.with_name(f"{stem}.parquet")
            os.replace(temp, final)  # no fsync: the next owner rebuilds it from the hub
            files.append(final)
        if self._current:
            self._superseded.append((now, self._current))
        self._current, self._touched = files, now
        self.retire(now)

    def retire(self, now: float) -> None:
        """Delete superseded versions past their grace; keep ours alive; sweep dead workers'."""
        while self._superseded and now - self._superseded[0][0] >= self.grace_s:
            for path in self._superseded.pop(0)[1]:
                path.unlink(missing_ok=True)
        if self._current and now - self._touched >= self.heartbeat_s:
            for path in self._current:
                os.utime(path, (now, now))
            self._touched = now
        if now - self._swept >= self.heartbeat_s:
            self._swept = now
            self._sweep(now)

    def close(self) -> None:
        """Graceful stop: everything buffered was committed, so every version goes."""
        for path in self._current + [p for _, files in self._superseded for p in files]:
            path.unlink(missing_ok=True)
        self._current, self._superseded = [], []

    def _sweep(self, now: float) -> None:
        ours = set(self._current) | {p for _, files in self._superseded for p in files}
        for path in self.root.glob("*/*.parquet"):
            if path.name == ANCHOR or path in ours:
                continue
            try:
                if now - path.stat().st_mtime > self.stale_s:
                    path.unlink(missing_ok=True)
            except FileNotFoundError:
                pass  # another worker swept it first

    def _anchor(self, folder: Path, name: str) -> None:
        anchor = folder / ANCHOR
        if not anchor.exists():
            temp = folder / f".{ANCHOR}.{uuid.uuid4().hex[:8]}.tmp"
            pq.write_table(_schema(name).empty_table(), temp)
            os.replace(temp, anchor)


def _tables(held: list[EventRows]) -> dict[str, pa.Table]:
    rows = TableRows()
    for prepared in held:
        rows.add_event_rows(prepared, False)
    out = {}
    for name, table in to_arrow(rows).tables.items():
        if name in PROVISIONAL_TABLES:
            out[name] = table.drop_columns([OWNER_COLUMN]) if OWNER_COLUMN in table.column_names else table
    return out
