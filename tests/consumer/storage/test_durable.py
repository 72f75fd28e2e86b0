"""Commit order and durability (consumer/storage/durable.py): every file is fsynced before it is
renamed into place, and every fact table is durably in place before any raw_events file is
renamed in, also when the commit fails half-way."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

import consumer.storage.durable as durable
from consumer.storage.warehouse import ParquetWarehouse, WarehouseWriteError
from tests.support.events import run_event
from tests.support.rows import rows_for

FACT_TABLES = ("run_events", "dead_letters")


def bodies() -> list[bytes]:
    # two event dates, a dead letter, a duplicate: facts and raw rows in several new folders
    return [run_event("r1", "Running", "2025-01-01T00:00:00Z"),
            run_event("r1", "Completed", "2025-01-02T00:00:00Z"),
            run_event("r2", "Running", "2025-01-02T00:00:00Z"),
            run_event("r1", "Running", "2025-01-01T00:00:00Z"),
            b"{not json"]


def table_of(path: Path, root: Path) -> str:
    return path.relative_to(root).parts[0]


def record(monkeypatch) -> list[tuple[str, Path]]:
    """Every fsync and rename the commit makes, in order."""
    events: list[tuple[str, Path]] = []
    fsync_path, replace = durable.fsync_path, os.replace

    def fsync(path):
        events.append(("fsync", Path(path)))
        fsync_path(path)

    def rename(src, dst):
        events.append(("rename", Path(dst)))
        replace(src, dst)
        events.append(("renamed-from", Path(src)))

    monkeypatch.setattr(durable, "fsync_path", fsync)
    monkeypatch.setattr(durable.os, "replace", rename)
    return events


def test_files_are_durable_before_renames_and_facts_before_raw_events(tmp_path, monkeypatch):
    events = record(monkeypatch)
    sink = ParquetWarehouse(tmp_path)
    sink.write(rows_for(bodies()))
    stats = sink.flush()
    assert stats.rows["raw_events"] == 3 and stats.rows["run_events"] == 3 and stats.rows["dead_letters"] == 1
    synced = [p for kind, p in events if kind == "fsync"]
    renames = [i for i, (kind, _) in enumerate(events) if kind == "rename"]
    first_rename = renames[0]
    for i in renames:  # its own bytes were fsynced under the temporary name, before any rename
        temp = events[i + 1][1]
        assert ("fsync", temp) in events[:first_rename]
    for created in {tmp_path, *(tmp_path / t for t in ("raw_events", *FACT_TABLES))}:
        assert ("fsync", created) in events[:first_rename]  # new folders' entries too
    raw = [i for i in renames if table_of(events[i][1], tmp_path) == "raw_events"]
    facts = [i for i in renames if i not in raw]
    assert raw and facts and max(facts) < min(raw)
    for i in facts:  # each fact folder fsynced after its rename and before the first raw rename
        folder_sync = events.index(("fsync", events[i][1].parent), i)
        assert folder_sync < min(raw)
    for i in raw:  # and the commit returned only after the raw folders were fsynced
        assert ("fsync", events[i][1].parent) in events[i:]
    assert sorted(stats.files) == sorted(tmp_path.rglob("*.parquet"))
    assert not list(tmp_path.rglob(".*.tmp")) and len(synced) >= 2 * len(stats.files)


@pytest.mark.parametrize("failure", ["write raw_events", "rename a fact file", "fsync a fact folder",
                                     "rename a raw_events file"])
def test_a_failed_commit_never_shows_raw_rows_without_their_facts_and_keeps_the_rows(
        tmp_path, monkeypatch, failure):
    sink = ParquetWarehouse(tmp_path)
    sink.write(rows_for(bodies()))
    pending = sink.pending_rows
    fsync_path, replace, write_table = durable.fsync_path, os.replace, pq.write_table
    renamed: list[Path] = []

    def broken() -> OSError:
        return OSError(errno.EIO, "Input/output error", str(tmp_path))

    def fsync(path):
        if failure == "fsync a fact folder" and renamed and Path(path) == renamed[-1].parent:
            raise broken()
        fsync_path(path)

    def rename(src, dst):
        raw = table_of(Path(dst), tmp_path) == "raw_events"
        raw_before = any(table_of(p, tmp_path) == "raw_events" for p in renamed)
        if (failure == "rename a fact file" and not raw and renamed) or (
                failure == "rename a raw_events file" and raw_before):
            raise broken()  # the second file of its group
        replace(src, dst)
        renamed.append(Path(dst))

    def write(table, where, **kwargs):
        if failure == "write raw_events" and "payload" in table.column_names:
            raise broken()
        write_table(table, where, **kwargs)

    monkeypatch.setattr(durable, "fsync_path", fsync)
    monkeypatch.setattr(durable.os, "replace", rename)
    monkeypatch.setattr(pq, "write_table", write)
    with pytest.raises(WarehouseWriteError, match="Input/output error"):
        sink.flush()
    assert not list(tmp_path.rglob(".*.tmp"))  # nothing half-written is left, visible or not
    raw_files = list(tmp_path.glob("raw_events/*/*.parquet"))
    assert len(raw_files) == (1 if failure == "rename a raw_events file" else 0)
    if failure == "write raw_events":
        assert list(tmp_path.rglob("*.parquet")) == []  # no file of the commit was renamed in
    assert stored_keys(tmp_path, "raw_events") <= stored_keys(tmp_path, "run_events")
    assert sink.pending_rows == pending  # kept for the retry

    monkeypatch.undo()
    assert sink.flush().events == 3
    assert len(stored_keys(tmp_path, "raw_events")) == 3
    assert stored_keys(tmp_path, "raw_events") == stored_keys(tmp_path, "run_events")


def stored_keys(root: Path, table: str) -> set[int]:
    files = sorted((root / table).glob("*/*.parquet"))
    if not files:
        return set()
    return set(ds.dataset(files, format="parquet").to_table(columns=["dedupe_key"])["dedupe_key"].to_pylist())


def test_temporary_files_of_a_crashed_commit_are_removed_once_stale(tmp_path):
    folder = tmp_path / "run_events" / "event_date=2025-01-01"
    folder.mkdir(parents=True)
    stale, fresh = folder / ".part-old-1.parquet.tmp", folder / ".part-new-2.parquet.tmp"
    for path in (stale, fresh):
        path.write_bytes(b"PAR1 partial")
    hour_ago = os.path.getmtime(fresh) - durable.STALE_TEMPORARY_S - 1
    os.utime(stale, (hour_ago, hour_ago))
    sink = ParquetWarehouse(tmp_path)
    sink.write(rows_for(bodies()))
    sink.flush()
    assert not stale.exists() and fresh.exists()  # a live writer's file is left alone
