"""Read-side DuckDB connections over the Parquet warehouse, with the views.

Each connection is in-memory: the stored tables are views over the Parquet
files (schema `store`), resolved at every query, so files committed while the
connection is open are seen by the next statement. Views come from sql/views.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from consumer.errors import QueryRefused
from consumer.storage.layout import PROVISIONAL_DIR, committed_glob, provisional_glob, table_dir
from consumer.storage.schema import PARTITION_COLUMN, table_ddl, view_sql

# Statement types a query may run: nothing that writes files or changes state.
_READ_ONLY = {
    duckdb.StatementType.SELECT,
    duckdb.StatementType.EXPLAIN,
}


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def connect(warehouse: Path) -> duckdb.DuckDBPyConnection:
    """An in-memory connection exposing store.<table> and the public views."""
    warehouse = Path(warehouse)
    con = duckdb.connect(":memory:")
    con.execute("SET TimeZone = 'UTC'")
    con.execute("CREATE SCHEMA store")
    con.execute("CREATE SCHEMA mem")  # in-memory tables standing in for tables with no files yet
    for name, ddl in table_ddl().items():
        if any(table_dir(warehouse, name).glob("*/*.parquet")):
            pattern = _sql_string(str(committed_glob(warehouse, name)))
            committed = (
                f"SELECT *, false AS provisional FROM read_parquet({pattern}, "
                f"hive_partitioning = true, hive_types = {{'{PARTITION_COLUMN}': DATE}}, "
                f"union_by_name = true)"
            )
        else:  # nothing stored yet: an empty table with the same columns
            con.execute(ddl.replace(f"CREATE TABLE {name}", f"CREATE TABLE mem.{name}", 1))
            committed = f"SELECT *, false AS provisional FROM mem.{name}"
        buffered = provisional_glob(warehouse, name)
        if buffered is not None:  # the live worker's reorder buffers (live/provisional.py)
            committed += (
                f" UNION ALL BY NAME SELECT *, true AS provisional "
                f"FROM read_parquet({_sql_string(str(buffered))}, union_by_name = true)"
            )
        # binding the view opens every listed provisional file (union_by_name), so a file
        # the worker deletes meanwhile fails it as it would fail a query
        execute(con, f"CREATE VIEW store.{name} AS {committed}")
    for _, sql in view_sql():
        con.execute(sql)
    return con


def check_read_only(sql: str) -> None:
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryRefused(f"the query does not parse: {exc}") from None
    if not statements:
        raise QueryRefused("the query is empty")
    for statement in statements:
        if statement.type not in _READ_ONLY:
            kind = statement.type.name
            raise QueryRefused(
                f"refused: amlwh query is read-only and this is a {kind} statement. "
                "Use SELECT (or EXPLAIN); to export, use --format csv/json and redirect."
            )


def execute(con: duckdb.DuckDBPyConnection, sql: str, attempts: int = 3) -> duckdb.DuckDBPyConnection:
    """con.execute, retried when a provisional file vanished between listing and reading
    (a live worker deletes superseded ones after a grace period; see live/provisional.py).
    Found by bench_worker's latency run, whose reader connects every 0.5 s: a connection's
    CREATE VIEW failed on a version file deleted while the view was being bound."""
    for attempt in range(attempts):
        try:
            return con.execute(sql)
        except duckdb.IOException as exc:
            if PROVISIONAL_DIR not in str(exc) or attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def run_query(con: duckdb.DuckDBPyConnection, sql: str) -> tuple[list[str], list[tuple]]:
    check_read_only(sql)
    relation = execute(con, sql)
    columns = [d[0] for d in relation.description] if relation.description else []
    return columns, relation.fetchall()


def describe_views(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str, list[tuple[str, str]]]]:
    """(schema, view, [(column, type)]) for the public views and stored tables."""
    rows = con.execute(
        "SELECT schema_name, table_name, column_name, data_type FROM duckdb_columns() "
        "WHERE database_name = 'memory' AND schema_name IN ('main', 'store') "
        "ORDER BY schema_name, table_name, column_index"
    ).fetchall()
    grouped: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for schema, table, column, dtype in rows:
        grouped.setdefault((schema, table), []).append((column, dtype))
    return [(s, t, cols) for (s, t), cols in grouped.items()]
