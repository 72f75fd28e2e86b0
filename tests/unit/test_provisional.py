"""Provisional files: buffered events are visible at once, counted once, and replaced."""

from __future__ import annotations

import pyarrow.parquet as pq

from consumer.provisional import PROVISIONAL_DIR, PROVISIONAL_TABLES, provisional_name
from consumer.query import connect
from consumer.warehouse import ParquetWarehouse
from tests.helpers import INGESTED_US, rows_for, run_event
from transforms.decode import DecodeRules, decode_body
from transforms.records import Origin
from transforms.rows import event_rows

STEM = provisional_name("ns.servicebus.windows.net/aml-events", "3")


def held_rows(bodies: list[bytes]):
    """What a partition's reorder buffer holds for these bodies (EventRows)."""
    held = []
    for seq, body in enumerate(bodies):
        origin = Origin("eventhub", "ns/aml-events", "3", str(seq * 100), seq, INGESTED_US)
        held += [event_rows(e, INGESTED_US) for e in decode_body(body, origin, DecodeRules()).events]
    return held


def runs(warehouse):
    con = connect(warehouse)
    try:
        return con.execute("SELECT run_id, status, ended_at IS NOT NULL FROM runs ORDER BY run_id").fetchall()
    finally:
        con.close()


def test_buffered_events_are_visible_before_any_commit(tmp_path):
    sink = ParquetWarehouse(tmp_path)
    sink.replace_provisional(STEM, held_rows([
        run_event("r1", "Running", "2025-01-01T00:00:00Z"),
        run_event("r1", "Completed", "2025-01-01T00:05:00Z"),
        run_event("r2", "Queued", "2025-01-01T00:01:00Z"),
    ]))
    assert runs(tmp_path) == [("r1", "Completed", True), ("r2", "Queued", False)]
    con = connect(tmp_path)
    assert con.execute("SELECT bool_and(provisional), count(*) FROM raw_events").fetchone() == (True, 3)
    con.close()
    assert list((tmp_path / "run_events").glob("*/*.parquet")) == []  # nothing committed yet


def test_an_event_both_committed_and_buffered_counts_once_as_committed(tmp_path):
    bodies = [run_event("r1", "Running", "2025-01-01T00:00:00Z"),
              run_event("r1", "Failed", "2025-01-01T00:09:00Z")]
    sink = ParquetWarehouse(tmp_path)
    sink.write(rows_for(bodies[:1]))
    sink.flush()
    sink.replace_provisional(STEM, held_rows(bodies))  # the committed one is still in the file
    con = connect(tmp_path)
    rows = con.execute("SELECT event_id, provisional FROM run_events ORDER BY event_time").fetchall()
    stored = con.execute("SELECT count(*) FROM store.run_events").fetchone()[0]
    con.close()
    assert stored == 3  # two copies of the first event on disk ...
    assert [p for _, p in rows] == [False, True]  # ... one in the view: the committed copy
    assert runs(tmp_path) == [("r1", "Failed", True)]


def test_replacing_with_an_empty_buffer_keeps_the_file_and_hides_its_old_rows(tmp_path):
    sink = ParquetWarehouse(tmp_path)
    sink.replace_provisional(STEM, held_rows([run_event("r1", "Running", "2025-01-01T00:00:00Z")]))
    con = connect(tmp_path)  # opened while the file had a row
    sink.replace_provisional(STEM, [])
    for table in PROVISIONAL_TABLES:
        file = tmp_path / PROVISIONAL_DIR / table / f"{STEM}.parquet"
        assert pq.read_metadata(file).num_rows == 0  # replaced, never removed: readers can open it
    assert con.execute("SELECT count(*) FROM runs").fetchone()[0] == 0  # the open connection sees it too
    con.close()
    assert not list((tmp_path / PROVISIONAL_DIR).rglob("*.tmp"))


def test_partitions_of_two_hubs_do_not_share_a_file():
    assert provisional_name("a.servicebus.windows.net/hub", "0") != provisional_name("b.servicebus.windows.net/hub", "0")
    assert "/" not in provisional_name("ns/hub", "1")
