"""Query connections over a warehouse that a live worker changes underneath them."""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections import Counter
from pathlib import Path

import duckdb

from consumer.live.provisional import ProvisionalFiles
from consumer.query import connection as q
from consumer.query.connection import connect
from consumer.storage.warehouse import ParquetWarehouse
from tests.support.events import run_event
from tests.support.rows import held_rows, rows_for


def test_a_provisional_file_gone_when_it_is_opened_is_skipped_and_its_events_still_count(tmp_path, monkeypatch):
    """A worker deletes a version only once every event in it is committed: a reader that
    listed the file and finds it gone reads those events from the committed files."""
    body = run_event("r1", "Running", "2025-01-01T00:00:00Z")
    files = ProvisionalFiles(tmp_path, "zstd", grace_s=0.0)
    files.publish(1, [held_rows([body])], now=1000.0)
    warehouse = ParquetWarehouse(tmp_path)
    warehouse.write(rows_for([body]))
    warehouse.flush()  # r1 committed: the version may be retired and deleted
    real_copy = q._copy_files
    deleted = []

    def copy_after_the_worker_deleted_it(con, table, paths):
        if not deleted:
            deleted.extend(p for p in paths if not p.name.startswith("_anchor"))
            files.settle(Counter({1: 1}), now=1001.0)  # retired, and deleted at once (grace 0)
        return real_copy(con, table, paths)

    monkeypatch.setattr(q, "_copy_files", copy_after_the_worker_deleted_it)
    con = connect(tmp_path)
    try:
        assert deleted and not Path(deleted[0]).exists()
        assert con.execute("SELECT run_id, status FROM runs").fetchall() == [("r1", "Running")]
        assert con.execute("SELECT count(*), bool_or(provisional) FROM raw_events").fetchall() == [(1, False)]
    finally:
        con.close()


def test_buffered_rows_are_read_when_the_connection_is_made(tmp_path):
    files = ProvisionalFiles(tmp_path, "zstd")
    files.publish(1, [held_rows([run_event("r1", "Running", "2025-01-01T00:00:00Z")])], now=1000.0)
    con = connect(tmp_path)
    try:
        files.publish(2, [held_rows([run_event("r2", "Running", "2025-01-01T00:00:00Z")])], now=1001.0)
        assert con.execute("SELECT run_id FROM runs").fetchall() == [("r1",)]
    finally:
        con.close()
    con = connect(tmp_path)
    try:
        assert con.execute("SELECT run_id FROM runs ORDER BY 1").fetchall() == [("r1",), ("r2",)]
    finally:
        con.close()


def _churn(warehouse, stop: threading.Event, grace_s: float) -> int:
    """A live worker's provisional files at their fastest: a new version every few ms, each
    retired at once and deleted `grace_s` later, for real (os.unlink). Returns versions written."""
    files = ProvisionalFiles(warehouse, "zstd", grace_s=grace_s)
    version = 0
    while not stop.is_set():
        version += 1
        files.publish(version, [held_rows([run_event(f"r{version}", "Running", "2025-01-01T00:00:00Z")])],
                      now=time.time())
        files.settle(Counter({version - 1: 1}), now=time.time())  # the previous one retires
    return version


def test_connections_and_queries_never_fail_while_provisional_files_come_and_go(tmp_path):
    """Reproduces the reader race with real deletions: binding a connection's views opens every
    listed provisional file, and the worker deletes retired ones meanwhile."""
    ParquetWarehouse(tmp_path).flush()  # an empty warehouse; runs come only from provisional files
    stop = threading.Event()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        churn = pool.submit(_churn, tmp_path, stop, 0.0)
        failures, connections = [], 0
        deadline = time.monotonic() + 4
        try:
            while time.monotonic() < deadline or connections < 30:
                try:
                    con = connect(tmp_path)
                    try:
                        q.run_query(con, "SELECT count(*) FROM runs")
                    finally:
                        con.close()
                except duckdb.Error as exc:
                    failures.append(str(exc))
                connections += 1
        finally:
            stop.set()
        versions = churn.result()
    assert versions > 100, "the churn was too slow to race with anything"
    assert failures == [], f"{len(failures)} of {connections} connections failed, first: {failures[0]}"
