"""The Parquet warehouse sink: `write(rows)` buffers, `flush()` commits.

Layout: <root>/<table>/event_date=YYYY-MM-DD/part-<time>-<uuid>.parquet.
Files are immutable. Each is written under a hidden temporary name, fsynced,
then renamed into place, so readers (DuckDB globs, pyarrow datasets) never see
a partial file. Within one flush the fact tables are committed before
raw_events: a raw_events row on disk proves the event's facts are on disk,
which is what lets the writer skip events it has already stored.
"""

from __future__ import annotations

import errno
import os
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from consumer.sqlfiles import PARTITION_COLUMN, table_schemas
from transforms.rows import EVENT_TABLES, TABLE_COLUMNS, TableRows
from transforms.timeparse import date_of_day

# Tables whose rows are deduplicated against their own stored keys. The fact
# tables follow raw_events' decision for the same event.
_SELF_KEYED = ("raw_events", "dead_letters", "ignored_events")
_COMMIT_ORDER = EVENT_TABLES + ("dead_letters", "ignored_events", "raw_events")


class WarehouseWriteError(RuntimeError):
    """The warehouse path cannot take the flush; nothing of it was acknowledged."""


@dataclass
class FlushStats:
    rows: dict[str, int] = field(default_factory=dict)  # rows committed per table
    duplicates: dict[str, int] = field(default_factory=dict)  # rows skipped as already stored
    files: list[Path] = field(default_factory=list)

    @property
    def events(self) -> int:
        return self.rows.get("raw_events", 0)


class ParquetWarehouse:
    def __init__(
        self,
        root: Path,
        *,
        compression: str = "zstd",
        row_group_size: int = 128 * 1024,
        now_us: Callable[[], int] | None = None,
    ) -> None:
        self.root = Path(root)
        self.compression = compression
        self.row_group_size = row_group_size
        self._now_us = now_us or (lambda: int(datetime.now(timezone.utc).timestamp() * 1e6))
        self._schemas = table_schemas()
        self._pending: dict[str, list[tuple]] = {name: [] for name in TABLE_COLUMNS}
        self._owners: dict[str, list[int]] = {name: [] for name in EVENT_TABLES}
        self._stored_keys: dict[tuple[str, int], np.ndarray] = {}

    # -- the sink interface -------------------------------------------------
    def write(self, rows: TableRows) -> None:
        base = len(self._pending["raw_events"])
        for name, owners in rows.owners.items():
            self._owners[name].extend(o + base for o in owners)
        for name, table_rows in rows.rows.items():
            if table_rows:
                self._pending[name].extend(table_rows)

    @property
    def pending_rows(self) -> int:
        return sum(len(r) for r in self._pending.values())

    def flush(self) -> FlushStats:
        """Commit everything written since the last flush. Raises WarehouseWriteError."""
        stats = FlushStats()
        if not self.pending_rows:
            return stats
        kept, new_keys = self._deduplicate(stats)
        stamp = datetime.fromtimestamp(self._now_us() / 1e6, timezone.utc).strftime("%Y%m%dT%H%M%S")
        try:
            for name in _COMMIT_ORDER:
                if kept[name]:
                    stats.files.extend(self._commit_table(name, kept[name], stamp))
                stats.rows[name] = len(kept[name])
        except OSError as exc:
            raise WarehouseWriteError(self._explain(exc)) from exc
        for (name, day), keys in new_keys.items():
            current = self._stored_keys.get((name, day))
            merged = keys if current is None else np.union1d(current, keys)
            self._stored_keys[(name, day)] = merged
        self._pending = {name: [] for name in TABLE_COLUMNS}
        self._owners = {name: [] for name in EVENT_TABLES}
        return stats

    # -- deduplication ------------------------------------------------------
    def _deduplicate(self, stats: FlushStats):
        kept: dict[str, list[tuple]] = {}
        new_keys: dict[tuple[str, int], np.ndarray] = {}
        raw_keep = None
        for name in _SELF_KEYED:
            rows = self._pending[name]
            keep = self._fresh_mask(name, rows, new_keys)
            if name == "raw_events":
                raw_keep = keep
            kept[name] = [row for row, k in zip(rows, keep) if k]
            stats.duplicates[name] = len(rows) - len(kept[name])
        for name in EVENT_TABLES:
            rows = self._pending[name]
            kept[name] = [row for row, o in zip(rows, self._owners[name]) if raw_keep[o]]
            stats.duplicates[name] = len(rows) - len(kept[name])
        return kept, new_keys

    def _fresh_mask(self, name: str, rows: list[tuple], new_keys) -> np.ndarray:
        if not rows:
            return np.zeros(0, dtype=bool)
        keys = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        days = np.fromiter((r[-1] for r in rows), dtype=np.int64, count=len(rows))
        keep = np.zeros(len(rows), dtype=bool)
        keep[np.unique(keys, return_index=True)[1]] = True  # first copy within the batch
        for day in np.unique(days).tolist():
            in_day = days == day
            stored = self._stored(name, day)
            if stored.size:
                keep[in_day] &= ~np.isin(keys[in_day], stored, assume_unique=False)
            new_keys[(name, day)] = keys[in_day & keep]
        return keep

    def _stored(self, name: str, day: int) -> np.ndarray:
        """Sorted keys already committed for (table, day), read once per process."""
        cached = self._stored_keys.get((name, day))
        if cached is not None:
            return cached
        folder = self._partition_dir(name, day)
        parts = []
        if folder.is_dir():
            for path in sorted(folder.glob("*.parquet")):
                column = pq.read_table(path, columns=["dedupe_key"])["dedupe_key"]
                parts.append(column.to_numpy())
        keys = np.unique(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64)
        self._stored_keys[(name, day)] = keys
        return keys

    # -- files --------------------------------------------------------------
    def _partition_dir(self, name: str, day: int) -> Path:
        return self.root / name / f"{PARTITION_COLUMN}={date_of_day(day)}"

    def _commit_table(self, name: str, rows: list[tuple], stamp: str) -> list[Path]:
        schema = self._schemas[name]
        by_day: dict[int, list[tuple]] = defaultdict(list)
        for row in rows:
            by_day[row[-1]].append(row)
        written = []
        for day, day_rows in sorted(by_day.items()):
            columns = list(zip(*day_rows))
            arrays = [pa.array(columns[i], type=f.type) for i, f in enumerate(schema)]
            table = pa.Table.from_arrays(arrays, schema=schema)
            written.append(self._write_file(self._partition_dir(name, day), table, stamp))
        return written

    def _write_file(self, folder: Path, table: pa.Table, stamp: str) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        name = f"part-{stamp}-{uuid.uuid4().hex[:12]}.parquet"
        final = folder / name
        temp = folder / f".{name}.tmp"  # hidden and not *.parquet: no reader globs it
        try:
            with open(temp, "wb") as fh:
                pq.write_table(
                    table, fh, compression=self.compression, row_group_size=self.row_group_size
                )
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(temp, final)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # make the rename itself durable
        finally:
            os.close(dir_fd)
        return final

    def _explain(self, exc: OSError) -> str:
        where = exc.filename or self.root
        if exc.errno == errno.ENOSPC:
            what = "the disk is full"
        elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            what = "the path is not writable"
        else:
            what = exc.strerror or str(exc)
        return (
            f"cannot write to the warehouse at {where}: {what}. Nothing from this flush was "
            f"acknowledged; free space or fix permissions on [warehouse] path ({self.root}) "
            f"and run again (already stored events are skipped)."
        )
