"""The Parquet warehouse sink: `write(rows)` buffers, `flush()` commits.

Layout: <root>/<table>/event_date=YYYY-MM-DD/part-<time>-<uuid>.parquet.
Files are immutable. Each is written under a hidden temporary name, fsynced,
then renamed into place, so readers (DuckDB globs, pyarrow datasets) never see
a partial file. Within one flush the fact tables are durably in place before
any raw_events file is renamed in: a raw_events row on disk proves the event's
facts are on disk, which is what lets the writer skip events it has already
stored (storage/durable.py: the order and why it is safe; storage/key_index.py: the
skipping).
"""

from __future__ import annotations

import errno
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa

from consumer.clock import wall_us
from consumer.errors import WarehouseWriteError
from consumer.storage.arrow import OWNER_COLUMN, ArrowBatch, to_arrow
from consumer.storage.durable import Publication
from consumer.storage.key_index import SELF_KEYED, KeyIndex
from consumer.storage.layout import partition_dir
from consumer.storage.parquet_files import kept_by_day, write_parts
from consumer.storage.remote_writes import RemotePublication, RemoteTarget, stored_keys_reader
from consumer.storage.schema import PARTITION_COLUMN
from transforms.rows import EVENT_TABLES, TABLE_COLUMNS, TableRows

# Tables in the order a commit stages them; raw_events is renamed in last (stage_files).
COMMIT_ORDER = EVENT_TABLES + ("dead_letters", "ignored_events", "raw_events")


@dataclass
class PendingBatch:
    """Tables written since the last flush, in write order. A fact table's `_owner`
    column counts raw rows from its own batch; `owner_offsets` says where that batch's
    raw rows start (added at commit, off the event loop)."""

    tables: dict[str, list[pa.Table]]
    owner_offsets: dict[str, list[int]]


@dataclass
class FlushStats:
    rows: dict[str, int] = field(default_factory=dict)  # rows committed per table
    duplicates: dict[str, int] = field(default_factory=dict)  # rows skipped as already stored
    files: list[Path] = field(default_factory=list)

    @property
    def events(self) -> int:
        return self.rows.get("raw_events", 0)

    def add(self, other: FlushStats) -> None:
        self.files.extend(other.files)
        for name, rows in other.rows.items():
            self.rows[name] = self.rows.get(name, 0) + rows
        for name, dups in other.duplicates.items():
            self.duplicates[name] = self.duplicates.get(name, 0) + dups


class ParquetWarehouse:
    def __init__(
        self,
        root: Path,
        *,
        compression: str = "zstd",
        row_group_size: int = 128 * 1024,
        now_us: Callable[[], int] | None = None,
        remote: RemoteTarget | None = None,
    ) -> None:
        """`root`: the warehouse folder; with `remote`, the local folder where commits are
        staged before their upload to it (storage/remote_writes.py)."""
        self.root = Path(root)
        self.remote = remote
        self.compression = compression
        self.row_group_size = row_group_size
        self._now_us = now_us or wall_us
        self._pending: dict[str, list[pa.Table]] = {name: [] for name in TABLE_COLUMNS}
        self._owner_offsets: dict[str, list[int]] = {name: [] for name in EVENT_TABLES}
        self._pending_events = 0
        self._pending_rows = 0
        self._writer = remote.writer() if remote is not None else None
        # what is stored already: the writer skips it
        self.keys = KeyIndex(self.root, None if self._writer is None else stored_keys_reader(self.root, self._writer))
        self._swept: set[Path] = set()  # partition folders cleared of crashed commits' leftovers

    # -- the sink interface -------------------------------------------------
    def write(self, batch: ArrowBatch | TableRows) -> None:
        """Buffer a batch until the next flush. Fact rows keep pointing at their raw row."""
        if isinstance(batch, TableRows):
            batch = to_arrow(batch)
        for name, table in batch.tables.items():
            self._pending[name].append(table)
            if name in EVENT_TABLES:  # its owners count from this batch's first raw row
                self._owner_offsets[name].append(self._pending_events)
            self._pending_rows += table.num_rows
        self._pending_events += batch.events

    @property
    def pending_rows(self) -> int:
        return self._pending_rows

    def flush(self) -> FlushStats:
        """Commit everything written since the last flush. Raises WarehouseWriteError and
        then keeps the rows, so a retry can commit them."""
        pending = self.take_pending()
        try:
            return self.commit(pending)
        except WarehouseWriteError:
            for name, tables in pending.tables.items():  # nothing was written in between: put it back
                self._pending[name] = tables
                self._pending_rows += sum(t.num_rows for t in tables)
            for name, offsets in pending.owner_offsets.items():
                self._owner_offsets[name] = offsets
            self._pending_events = sum(t.num_rows for t in pending.tables.get("raw_events", []))
            raise

    def take_pending(self) -> PendingBatch:
        """Hand over what was written so far and start a new batch: the live worker commits
        it off the event loop while further writes go to the next batch."""
        pending = PendingBatch({name: tables for name, tables in self._pending.items() if tables},
                               self._owner_offsets)
        self._pending = {name: [] for name in TABLE_COLUMNS}
        self._owner_offsets = {name: [] for name in EVENT_TABLES}
        self._pending_events = self._pending_rows = 0
        return pending

    def commit(self, batch: PendingBatch) -> FlushStats:
        """Write one taken batch durably (one commit at a time). Raises WarehouseWriteError."""
        stats = FlushStats()
        pending = batch.tables
        if not pending:
            return stats
        masks, new_keys = self._deduplicate(batch, stats)
        stamp = self.file_stamp()
        try:
            with self.publication() as files:
                for name in COMMIT_ORDER:
                    stats.rows[name] = 0
                    if name in pending:
                        stats.rows[name] = self.stage_files(name, pending[name], masks[name], stamp,
                                                            files)
                stats.files.extend(files.publish())
        except OSError as exc:
            raise WarehouseWriteError(self.explain(exc)) from exc
        self.keys.remember(new_keys)
        return stats

    def publication(self) -> Publication:
        """An empty set of files to stage and publish together (storage/durable.py); use
        it as a context manager so an error discards what it staged."""
        if self._writer is not None:
            return RemotePublication(self.root, self._writer)
        return Publication(self._swept)

    @property
    def location(self) -> str:
        """Where the warehouse is, as the operator configured it."""
        return self.remote.url if self.remote is not None else str(self.root)

    def probe(self, patience_s: float) -> None:
        """A remote warehouse's preflight (storage/remote_writes.py): WarehouseWriteError if
        it cannot be written."""
        if self._writer is not None:
            self._writer.probe(patience_s)

    def __enter__(self) -> ParquetWarehouse:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()

    def file_stamp(self) -> str:
        """The time part of the names of the files one commit writes."""
        return datetime.fromtimestamp(self._now_us() / 1e6, timezone.utc).strftime("%Y%m%dT%H%M%S")

    # -- deduplication ------------------------------------------------------
    def _deduplicate(self, batch: PendingBatch, stats: FlushStats):
        """Keep-masks over each table's pending rows (in write order)."""
        pending = batch.tables
        masks: dict[str, np.ndarray] = {}
        new_keys: dict[tuple[str, int], np.ndarray] = {}
        for name in SELF_KEYED:
            if name in pending:
                masks[name] = self.keys.fresh_mask_of(name, pending[name], new_keys)
        raw_keep = masks.get("raw_events", np.zeros(0, dtype=bool))
        for name in EVENT_TABLES:
            if name in pending:
                # per table, then concatenated (as in KeyIndex.fresh_mask_of): ChunkedArray.to_numpy over
                # many chunks costs ~0.25 us a row
                owners = np.concatenate([t[OWNER_COLUMN].to_numpy() + offset for t, offset
                                         in zip(pending[name], batch.owner_offsets[name])])
                masks[name] = raw_keep[owners]
        for name, mask in masks.items():
            stats.duplicates[name] = int(len(mask) - mask.sum())
        return masks, new_keys

    # -- files --------------------------------------------------------------
    def stage_files(self, name: str, tables: list[pa.Table], keep: np.ndarray, stamp: str,
                    files: Publication) -> int:
        """One file per event date of the kept rows, staged in `files`; returns the rows.
        raw_events files go in the publication's last group: storage/durable.py says why."""
        group = 1 if name == "raw_events" else 0
        drop = [PARTITION_COLUMN] + ([OWNER_COLUMN] if name in EVENT_TABLES else [])
        rows = 0
        for day, parts in sorted(kept_by_day(tables, keep).items()):
            file = f"part-{stamp}-{uuid.uuid4().hex[:12]}.parquet"
            with files.create(partition_dir(self.root, name, day), file, group) as fh:
                rows += write_parts(parts, drop, fh, self.compression, self.row_group_size)
        return rows

    def explain(self, exc: OSError) -> str:
        where = exc.filename or self.root
        if exc.errno == errno.ENOSPC:
            what = "the disk is full"
        elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            what = "the path is not writable"
        else:
            what = exc.strerror or str(exc)
        if self.remote is not None:
            return (
                f"cannot stage files for the warehouse at {self.remote.url} in the work folder "
                f"{where}: {what}. Nothing from this flush was acknowledged; set [warehouse] "
                f"work_dir (AMLWH_WAREHOUSE__WORK_DIR) to a local folder with room and run again "
                f"(already stored events are skipped).")
        return (
            f"cannot write to the warehouse at {where}: {what}. Nothing from this flush was "
            f"acknowledged; free space or fix permissions on [warehouse] path ({self.root}) "
            f"and run again (already stored events are skipped)."
        )

