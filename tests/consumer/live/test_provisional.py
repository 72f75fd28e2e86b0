"""Provisional files: buffered events are visible at once, counted once, and retired."""

from __future__ import annotations

import os
from collections import Counter

from consumer.live.provisional import ANCHOR, PROVISIONAL_DIR, PROVISIONAL_TABLES, ProvisionalFiles
from consumer.query.connection import connect
from consumer.storage.warehouse import ParquetWarehouse
from tests.support.events import run_event
from tests.support.rows import held_rows, rows_for


def query(warehouse, sql):
    con = connect(warehouse)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def files(warehouse, table="run_events"):
    return sorted(p.name for p in (warehouse / PROVISIONAL_DIR / table).glob("*.parquet"))


def test_buffered_events_of_every_partition_are_visible_before_any_commit(tmp_path):
    ParquetWarehouse(tmp_path)
    prov = ProvisionalFiles(tmp_path, "zstd")
    prov.publish(1, [
        held_rows([run_event("r1", "Running", "2025-01-01T00:00:00Z"),
                   run_event("r1", "Completed", "2025-01-01T00:05:00Z")], partition="0"),
        [],
        held_rows([run_event("r2", "Queued", "2025-01-01T00:01:00Z")], partition="2"),
    ], now=1000.0)
    assert query(tmp_path, "SELECT run_id, status, ended_at IS NOT NULL FROM runs ORDER BY 1") == [
        ("r1", "Completed", True), ("r2", "Queued", False)]
    assert query(tmp_path, "SELECT bool_and(provisional), count(*) FROM raw_events") == [(True, 3)]
    assert not (tmp_path / "run_events").exists()  # nothing committed
    for table in PROVISIONAL_TABLES:
        assert ANCHOR in files(tmp_path, table)  # the glob always matches, even when all else is gone


def test_an_event_both_committed_and_buffered_counts_once_as_committed(tmp_path):
    bodies = [run_event("r1", "Running", "2025-01-01T00:00:00Z"),
              run_event("r1", "Failed", "2025-01-01T00:09:00Z")]
    sink = ParquetWarehouse(tmp_path)
    sink.write(rows_for(bodies[:1]))
    sink.flush()
    ProvisionalFiles(tmp_path, "zstd").publish(1, [held_rows(bodies)], now=1000.0)
    assert query(tmp_path, "SELECT count(*) FROM store.run_events") == [(3,)]  # two copies of one event
    rows = query(tmp_path, "SELECT provisional FROM run_events ORDER BY event_time")
    assert rows == [(False,), (True,)]  # one in the view: the committed copy
    assert query(tmp_path, "SELECT status FROM runs") == [("Failed",)]


def test_a_version_is_retired_when_all_its_events_settled_and_deleted_after_the_grace(tmp_path):
    prov = ProvisionalFiles(tmp_path, "zstd", grace_s=10, heartbeat_s=1000)
    prov.publish(1, [held_rows([run_event("r1", "Running", "2025-01-01T00:00:00Z"),
                                run_event("r2", "Running", "2025-01-01T00:00:01Z")])], now=1000.0)
    first = set(files(tmp_path)) - {ANCHOR}
    prov.publish(2, [[]], now=1002.0)  # nothing new: no files
    prov.publish(3, [held_rows([run_event("r3", "Running", "2025-01-01T00:00:02Z")])], now=1002.0)
    assert len(files(tmp_path)) == 3
    con = connect(tmp_path)  # a reader that listed version 1
    prov.settle(Counter({1: 1}), now=1003.0)  # one of its two events committed
    prov.settle(Counter(), now=1100.0)
    assert first < set(files(tmp_path))
    prov.settle(Counter({1: 1}), now=1101.0)  # the other one: version 1 retired ...
    assert first < set(files(tmp_path))  # ... but kept for readers during the grace period
    assert con.execute("SELECT count(*) FROM runs").fetchone() == (3,)
    prov.settle(Counter(), now=1111.0)
    assert not first & set(files(tmp_path))
    # a held connection keeps the buffered rows it read when it was made; a new one reads
    # what is buffered now
    assert con.execute("SELECT run_id FROM runs ORDER BY 1").fetchall() == [("r1",), ("r2",), ("r3",)]
    con.close()
    assert query(tmp_path, "SELECT run_id FROM runs") == [("r3",)]
    prov.close()
    assert files(tmp_path) == [ANCHOR]
    assert not list((tmp_path / PROVISIONAL_DIR).rglob("*.tmp"))


def test_a_dead_workers_files_are_swept_once_stale_and_a_live_ones_are_kept_fresh(tmp_path):
    dead = ProvisionalFiles(tmp_path, "zstd")
    dead.publish(1, [held_rows([run_event("r1", "Running", "2025-01-01T00:00:00Z")])], now=1000.0)
    dead_files = set(files(tmp_path)) - {ANCHOR}
    for path in (tmp_path / PROVISIONAL_DIR).glob("*/*.parquet"):
        if path.name != ANCHOR:
            os.utime(path, (1000.0, 1000.0))
    live = ProvisionalFiles(tmp_path, "zstd", stale_s=300, heartbeat_s=60)
    live.publish(1, [held_rows([run_event("r2", "Running", "2025-01-01T00:00:00Z")])], now=1200.0)
    live.settle(Counter(), now=1200.0)
    assert dead_files < set(files(tmp_path))  # 200 s old: not stale yet
    live.settle(Counter(), now=1301.0)  # the sweep runs once a heartbeat; the live files get touched
    assert not dead_files & set(files(tmp_path))
    assert query(tmp_path, "SELECT run_id FROM runs") == [("r2",)]
    live.settle(Counter(), now=1700.0)  # touched at 1301: would be stale by now if untouched
    assert query(tmp_path, "SELECT run_id FROM runs") == [("r2",)]


def test_a_live_file_swept_by_another_worker_does_not_stop_this_one(tmp_path, caplog):
    """A worker that stalls past stale_s may find its own live files swept by a peer; its
    heartbeat must not fail on them (the worker would stop with a misleading write error)."""
    prov = ProvisionalFiles(tmp_path, "zstd", stale_s=300, heartbeat_s=60)
    prov.publish(1, [held_rows([run_event("r1", "Running", "2025-01-01T00:00:00Z")])], now=1000.0)
    swept = [tmp_path / PROVISIONAL_DIR / "run_events" / name for name in files(tmp_path) if name != ANCHOR]
    assert swept
    for path in swept:
        os.utime(path, (1000.0, 1000.0))  # last touched at 1000 on the clock `now` is read from
    ProvisionalFiles(tmp_path, "zstd", stale_s=300)._sweep(now=1400.0)  # a peer, 400 s later
    assert not any(path.exists() for path in swept)
    with caplog.at_level("WARNING", logger="amlwh.worker"):
        prov.settle(Counter(), now=1400.0)  # the heartbeat finds its own file gone
        prov.settle(Counter(), now=1500.0)  # and does not look for it again
    warnings = [r.getMessage() for r in caplog.records if "swept by another worker" in r.getMessage()]
    assert len(warnings) == 1 and str(swept[0]) in warnings[0]
    prov.settle(Counter({1: 1}), now=1501.0)  # its events committed: retired without error
    prov.close()
