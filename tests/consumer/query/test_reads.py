"""A query binds only what it reads (query/reads.py): same answers as the whole build."""

from __future__ import annotations

import json
import re

import duckdb
import pytest

from consumer.live.provisional import ProvisionalFiles
from consumer.maintenance.compaction import compact
from consumer.query.connection import connect, query_warehouse, run_query
from consumer.query.reads import _collect, closure, statement_reads, stored_name, view_statements
from consumer.storage.schema import table_ddl, view_sql
from tests.consumer.maintenance.test_compaction import STREAM, write_batch
from tests.support.events import run_event
from tests.support.rows import held_rows
from tests.support.warehouse import VIEWS

KNOWN = {name for name, _, _ in view_statements()} | {stored_name(t) for t in table_ddl()}


@pytest.fixture
def parser():
    with duckdb.connect() as con:
        yield con


def test_every_view_of_sql_views_is_a_statement_with_its_reads():
    created = sum(len(re.findall(r"CREATE VIEW", text)) for _, text in view_sql())
    assert len(view_statements()) == created
    with duckdb.connect() as con:
        for name, statement, reads in view_statements():
            body = statement[statement.index(" AS") + 3:]
            tree = json.loads(con.execute("SELECT json_serialize_sql(?)", [body]).fetchall()[0][0])
            assert not tree["error"], (name, tree)
            names: set[str] = set()
            assert _collect(tree["statements"], names, set()), name  # DuckDB's parse of the body
            expected = names & KNOWN
            assert reads == expected, name


def test_a_statement_reading_no_table_binds_nothing(parser):
    assert statement_reads(parser, "SELECT 1") == frozenset()
    assert statement_reads(parser, "SELECT now(), x FROM (VALUES (1)) t(x)") == frozenset()


def test_views_are_followed_to_the_stored_tables(parser):
    reads = statement_reads(parser, "SELECT * FROM Run_Durations")
    assert {"main.run_durations", "main.runs", "main.run_events", "store.run_events"} <= reads
    assert not reads & {"store.model_registrations", "main.models", "store.drift_detections"}
    assert statement_reads(parser, "SELECT count(*) FROM models") == closure({"main.models"})
    with_cte = "WITH x AS (SELECT * FROM drift) SELECT (SELECT count(*) FROM x), (SELECT 1 FROM store.raw_events)"
    assert statement_reads(parser, with_cte) == closure({"main.drift", "store.raw_events"})


@pytest.mark.parametrize("sql", [
    "SELECT * FROM duckdb_views()",  # table functions see the catalog
    "SELECT * FROM read_parquet('x.parquet')",
    "EXPLAIN SELECT * FROM runs",
    "SHOW TABLES",
    "SELECT * FROM information_schema.tables",
    "SELECT * FROM no_such_view",  # the whole build says what exists
    "SELECT * FROM memory.main.runs",
    "SELECT * FROM",  # does not parse
])
def test_anything_uncertain_binds_everything(parser, sql):
    assert statement_reads(parser, sql) is None


def test_each_view_alone_answers_as_the_whole_connection(tmp_path):
    """Committed files, the maintained state, files not folded in and provisional rows."""
    for n, batch in enumerate([list(range(0, len(STREAM), 2)), list(range(1, len(STREAM), 3))]):
        write_batch(tmp_path, batch, n)
    compact(tmp_path, now_s=lambda: 1e9, grace_s=0)
    write_batch(tmp_path, list(range(len(STREAM) - 8, len(STREAM))), 5)  # not folded in yet
    ProvisionalFiles(tmp_path, "zstd").publish(
        1, [held_rows([run_event("r-buffered", "Running", "2025-01-02T11:00:00Z")])], now=1000.0)
    statements = [f"SELECT * FROM {v}" for v in VIEWS] + [
        "SELECT 1", "SELECT count(*) FROM store.run_events",
        "SELECT (SELECT count(*) FROM models) + (SELECT count(*) FROM internal.run_metrics)",
        "SELECT schema_name, view_name FROM duckdb_views() WHERE NOT internal",
    ]
    whole = connect(tmp_path)
    try:
        for sql in statements:
            columns, rows = query_warehouse(tmp_path, sql)
            expected_columns, expected = run_query(whole, sql)
            assert columns == expected_columns, sql
            assert sorted(rows, key=repr) == sorted(expected, key=repr), sql
        assert query_warehouse(tmp_path, "SELECT count(*) FROM runs WHERE run_id = 'r-buffered'")[1] == [(1,)]
    finally:
        whole.close()
