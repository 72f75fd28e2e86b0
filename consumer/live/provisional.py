"""Provisional files: what the live worker's reorder buffers hold, visible to queries.

The reorder buffer holds each event until the partition's watermark passes it
(`[ordering] max_lateness_s`, 30 s by default), so a view fed only by committed
events lags live traffic by that much. Stream processors answer this with early
(speculative) results next to the final ones; here, at each flush, a worker
writes the events its buffers took since the previous flush (and still hold)
as one new Parquet file per table, a *version*:
`<warehouse>/_provisional/<table>/<instance>-<version>.parquet`. Query
connections read them next to the committed files with `provisional = true`,
and the dedupe views rank committed copies first, so an event counts once
whether it is buffered, committed, or both for a moment.

A version is retired once every event in it has left its buffer and the flush
that carried it out has committed (the worker reports that through `settle`),
and deleted `grace_s` later: files are immutable, because DuckDB may open a
file more than once per query, and a query that listed a file can still read
it. Every row of a retired version is a committed event by then, so a reader
seeing both counts it once. Each table folder keeps an empty `_anchor.parquet`
so its glob always matches something. A crashed worker's files stay visible
until swept by any worker once older than `stale_s` (live workers touch theirs
every `heartbeat_s`); their events are real, and the next owner of the
partition re-reads and commits them. Nothing here is durable state; stock tools
reading `<warehouse>/<table>/` see committed rows only.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from consumer.storage.arrow import OWNER_COLUMN, to_arrow
from consumer.storage.layout import ANCHOR, PROVISIONAL_DIR, provisional_dir
from consumer.storage.schema import PARTITION_COLUMN, table_schemas
from transforms.rows import EVENT_TABLES, EventRows, TableRows

log = logging.getLogger("amlwh.worker")

PROVISIONAL_TABLES = ("raw_events",) + EVENT_TABLES


def _schema(name: str) -> pa.Schema:
    return table_schemas()[name].append(pa.field(PARTITION_COLUMN, pa.date32()))


class ProvisionalFiles:
    """One worker process's provisional files. Not thread-safe: one writer thread uses it."""

    def __init__(self, root: Path, compression: str, *, grace_s: float = 15.0,
                 stale_s: float = 300.0, heartbeat_s: float = 60.0) -> None:
        self.warehouse = Path(root)
        self.root = self.warehouse / PROVISIONAL_DIR  # every table's folder: what sweeps glob
        self.compression = compression
        self.grace_s, self.stale_s, self.heartbeat_s = grace_s, stale_s, heartbeat_s
        self.instance = uuid.uuid4().hex[:12]
        self._live: dict[int, tuple[list[Path], int]] = {}  # version -> (files, events not settled)
        self._retired: list[tuple[float, list[Path]]] = []  # (retired at, files), oldest first
        self._touched = 0.0
        self._swept = float("-inf")

    def publish(self, version: int, partitions: Iterable[list[EventRows]], now: float) -> None:
        """Write `version`: these partitions' newly buffered events (empty: no files).
        `now` is wall-clock seconds (file mtimes are compared with it)."""
        parts = [held for held in partitions if held]
        if not parts:
            return
        stem = f"{self.instance}-{version:08d}"
        writers: dict[str, tuple[pq.ParquetWriter, Path]] = {}
        try:
            for name in PROVISIONAL_TABLES:
                folder = provisional_dir(self.warehouse, name)
                folder.mkdir(parents=True, exist_ok=True)
                self._anchor(folder, name)
                temp = folder / f".{stem}.tmp"
                writers[name] = (pq.ParquetWriter(temp, _schema(name), compression=self.compression), temp)
            for held in parts:  # one row group per partition
                for name, table in _tables(held).items():
                    writers[name][0].write_table(table)
        except BaseException:
            for writer, temp in writers.values():
                writer.close()
                temp.unlink(missing_ok=True)
            raise
        files = []
        for writer, temp in writers.values():
            writer.close()
            final = temp.with_name(f"{stem}.parquet")
            os.replace(temp, final)  # no fsync: after a crash the hub has these events
            files.append(final)
        self._live[version] = (files, sum(len(h) for h in parts))

    def settle(self, done: Counter, now: float) -> None:
        """Events of these versions have been committed (or dropped with their partition):
        retire versions with none left, delete retired ones past their grace."""
        for version, count in done.items():
            if version in self._live:
                files, left = self._live[version]
                if left - count > 0:
                    self._live[version] = (files, left - count)
                else:
                    del self._live[version]
                    self._retired.append((now, files))
        while self._retired and now - self._retired[0][0] >= self.grace_s:
            for path in self._retired.pop(0)[1]:
                path.unlink(missing_ok=True)
        if now - self._touched >= self.heartbeat_s:
            self._touched = now
            self._heartbeat(now)
        if now - self._swept >= self.heartbeat_s:
            self._swept = now
            self._sweep(now)

    def _heartbeat(self, now: float) -> None:
        """Touch every live file, so other workers' sweeps see it alive. A file already gone
        was swept by a peer while this worker stalled past `stale_s`: its events are still
        buffered here and will be committed, so the worker goes on, the file forgotten."""
        for version, (files, left) in list(self._live.items()):
            alive = []
            for path in files:
                try:
                    os.utime(path, (now, now))
                    alive.append(path)
                except FileNotFoundError:
                    log.warning("provisional file %s was swept by another worker (this one stalled "
                                "over %.0fs); its events show again once committed", path, self.stale_s,
                                extra={"file": str(path)})
            self._live[version] = (alive, left)

    def next_deletion_at(self) -> float | None:
        """When the oldest retired version passes its grace (the clock `settle` is given), or
        None when none is retired: a worker with nothing else to flush settles again then."""
        return self._retired[0][0] + self.grace_s if self._retired else None

    def close(self) -> None:
        """Graceful stop: everything buffered was committed, so every version goes."""
        for files in [f for f, _ in self._live.values()] + [f for _, f in self._retired]:
            for path in files:
                path.unlink(missing_ok=True)
        self._live, self._retired = {}, []

    def _ours(self) -> set[Path]:
        return {p for files, _ in self._live.values() for p in files} | {
            p for _, files in self._retired for p in files}

    def _sweep(self, now: float) -> None:
        ours = self._ours()
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
