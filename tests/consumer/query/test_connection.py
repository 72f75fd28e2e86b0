"""Query connections over a warehouse that a live worker changes underneath them."""

from __future__ import annotations

import duckdb

from consumer.live.provisional import ProvisionalFiles
from consumer.query import connection as q
from consumer.query.connection import connect
from consumer.storage.layout import PROVISIONAL_DIR
from tests.support.events import run_event
from tests.support.rows import held_rows


def test_a_file_deleted_between_listing_and_reading_is_retried(tmp_path, monkeypatch):
    ProvisionalFiles(tmp_path, "zstd").publish(1, [held_rows([run_event("r1", "Running", "2025-01-01T00:00:00Z")])],
                                              now=1000.0)
    con = connect(tmp_path)
    calls = []

    class Flaky:
        def execute(self, sql):
            calls.append(sql)
            if len(calls) == 1:
                raise duckdb.IOException(f"IO Error: No files found in {tmp_path}/{PROVISIONAL_DIR}/x.parquet")
            return con.execute(sql)

    assert q.run_query(Flaky(), "SELECT run_id FROM runs")[1] == [("r1",)]
    assert len(calls) == 2
    con.close()


def test_a_file_deleted_while_a_connection_binds_its_views_is_retried(tmp_path, monkeypatch):
    """Binding store.<table> opens every provisional file it lists; one the worker deletes
    in between fails the CREATE VIEW, which is retried like a query."""
    ProvisionalFiles(tmp_path, "zstd").publish(1, [held_rows([run_event("r1", "Running", "2025-01-01T00:00:00Z")])],
                                              now=1000.0)
    real_connect = duckdb.connect
    failed = []

    class Flaky:
        def __init__(self, con):
            self.con = con

        def execute(self, sql, *args):
            if sql.startswith("CREATE VIEW store.run_events") and not failed:
                failed.append(sql)
                raise duckdb.IOException(
                    f'IO Error: Cannot open file "{tmp_path}/{PROVISIONAL_DIR}/run_events/x.parquet"')
            return self.con.execute(sql, *args)

        def __getattr__(self, name):
            return getattr(self.con, name)

    monkeypatch.setattr(q.duckdb, "connect", lambda *a, **k: Flaky(real_connect(*a, **k)))
    con = connect(tmp_path)
    assert failed and q.run_query(con, "SELECT run_id FROM runs")[1] == [("r1",)]
    con.close()
