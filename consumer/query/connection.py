"""Read-side DuckDB connections over the Parquet warehouse, with the views.

Each connection is in-memory: the stored tables are views over the Parquet files (schema
`store`), resolved at every query, so files committed while the connection is open are seen
by the next statement. Views come from sql/views.

Provisional rows (a live worker's reorder buffers, live/provisional.py) are read once, when
the connection is made, into memory. A worker deletes a provisional file `grace_s` after
every event in it was committed; DuckDB opens every file it lists while it binds a view and
again while it scans, so reading them in place failed whenever one went in between. Here a
file listed but gone when opened is skipped, and that loses nothing: it was retired, so its
events are in committed files, which every statement lists later. Once read, nothing can
vanish under a statement. A connection held open sees committed rows as they land, and the
buffered rows of the moment it was made.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import duckdb

from consumer.errors import QueryRefused
from consumer.query.reads import closure, statement_reads, stored_name, view_statements
from consumer.query.state_views import (
    STATE_READS,
    STATE_VIEWS,
    Manifest,
    StateScope,
    bind_state,
    read_manifest,
    views_fingerprint,
)
from consumer.storage.layout import ANCHOR, committed_glob, provisional_dir, table_dir
from consumer.storage.schema import (
    ddl_columns,
    read_committed_sql,
    sql_string,
    table_ddl,
    view_sql,
)

T = TypeVar("T")

# Statement types a query may run: nothing that writes files or changes state.
_READ_ONLY = {
    duckdb.StatementType.SELECT,
    duckdb.StatementType.EXPLAIN,
}


# Builds and statements started again after a compaction deleted a file they had listed:
# each retry lists anew, and deletions come a grace period after their replacement appeared.
_ATTEMPTS = 5


def connect(warehouse: Path) -> duckdb.DuckDBPyConnection:
    """An in-memory connection exposing store.<table> and the public views."""
    return open_views(warehouse)[0]


def open_views(warehouse: Path, *, provisional: bool = True, use_state: bool = True,
               from_empty_state: bool = False,
               reads: frozenset[str] | None = None) -> tuple[duckdb.DuckDBPyConnection, StateScope | None]:
    """A connection with the stored tables and the views, over the maintained state when
    there is one (and `use_state`), and its scope (None: reference views from scratch).
    `from_empty_state`: as over a state that has folded nothing in, so every stored file is
    listed as new (a fold then knows exactly which files it read).
    `reads`: only these qualified views and stored tables, closed over what they read
    (query/reads.py); None: all of them.
    A file a compaction deleted between its listing and its read makes the build start
    again: compaction deletes a file only after its replacement was visible (maintenance/
    compaction.py), so the new listing holds every event."""
    for attempt in range(_ATTEMPTS):
        try:
            return _open_views(Path(warehouse), provisional, use_state, from_empty_state, reads)
        except (duckdb.IOException, FileNotFoundError):
            if attempt == _ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


def _open_views(warehouse: Path, provisional: bool, use_state: bool, from_empty_state: bool,
                reads: frozenset[str] | None) -> tuple[duckdb.DuckDBPyConnection, StateScope | None]:
    if reads is not None and use_state and reads & STATE_VIEWS:
        reads = closure(reads | STATE_READS)  # what bind_state reads besides the views
    con = duckdb.connect(":memory:")
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute("SET parquet_metadata_cache = true")  # a statement reads each footer once
        for schema in ("store", "mem", "internal"):  # mem: empty tables with the stored columns
            con.execute(f"CREATE SCHEMA {schema}")
        sources = {}
        for name, ddl in table_ddl().items():
            if reads is not None and stored_name(name) not in reads:
                continue
            con.execute(ddl.replace(f"CREATE TABLE {name}", f"CREATE TABLE mem.{name}", 1))
            # Bound against the empty table first: creating a view binds it, and bound against
            # the files every view would read every footer of every table it uses, for each
            # view (~0.3 s on a 200-file warehouse). Views are bound again when a statement
            # uses them, against the files then.
            con.execute(f"CREATE VIEW store.{name} AS SELECT *, false AS provisional FROM mem.{name}")
            sources[name] = _stored_rows(con, warehouse, name, ddl, provisional)
        if reads is None:
            for _, sql in view_sql():
                con.execute(sql)
        else:
            for name, sql, _ in view_statements():
                if name in reads:
                    con.execute(sql)
        for name, source in sources.items():
            con.execute(f"CREATE OR REPLACE VIEW store.{name} AS {source}")
        state_wanted = reads is None or bool(reads & STATE_VIEWS)
        manifest = read_manifest(warehouse) if use_state and state_wanted else None
        if from_empty_state:  # every stored file is new: what a first fold or a rebuild reads
            manifest = Manifest(0, views_fingerprint(), {}, frozenset())
        scope = None
        if manifest is not None:
            buffered = {name: f"_buffered_{name}" for name, source in sources.items()
                        if f"_buffered_{name}" in source}
            scope = bind_state(con, warehouse, manifest, buffered)
        return con, scope
    except BaseException:
        con.close()
        raise


def _stored_rows(con: duckdb.DuckDBPyConnection, warehouse: Path, name: str, ddl: str,
                 provisional: bool) -> str:
    """The SELECT of store.<name>: its committed files (if any) and, with `provisional`, the
    rows of provisional files, read now. It names the DDL's columns, so files of another
    release, with a column more or less, read with the same shape."""
    columns = ", ".join(f'"{column}"' for column, _ in ddl_columns(ddl))
    if any(table_dir(warehouse, name).glob("*/*.parquet")):
        source = (f"SELECT {columns}, false AS provisional FROM "
                  f"{read_committed_sql(committed_glob(warehouse, name))}")
    else:  # nothing stored yet
        source = f"SELECT *, false AS provisional FROM mem.{name}"
    buffered = buffered_rows(con, warehouse, name) if provisional else None
    if buffered is not None:
        con.register(f"_buffered_{name}", buffered)
        source += f" UNION ALL BY NAME SELECT {columns}, true AS provisional FROM _buffered_{name}"
    return source


def query_warehouse(warehouse: Path, sql: str) -> tuple[list[str], list[tuple]]:
    """Run one read-only statement on a fresh connection that binds only what the
    statement reads; (columns, rows)."""
    with duckdb.connect(":memory:") as parser:  # the statement is checked before any file is read
        check_read_only(sql, parser)
        reads = statement_reads(parser, sql)
    return read_warehouse(warehouse, lambda con: run_query(con, sql), reads=reads)


def read_warehouse(warehouse: Path, work: Callable[[duckdb.DuckDBPyConnection], T], *,
                   reads: frozenset[str] | None = None) -> T:
    """`work(con)` on a fresh connection (open_views with `reads`), closed after. Started
    again, on a new connection, when a file it listed was deleted by a compaction before it
    was read (see open_views)."""
    for attempt in range(_ATTEMPTS):
        con = open_views(warehouse, reads=reads)[0]
        try:
            return work(con)
        except duckdb.IOException:
            if attempt == _ATTEMPTS - 1:
                raise
        finally:
            con.close()
    raise AssertionError("unreachable")


def buffered_rows(con: duckdb.DuckDBPyConnection, warehouse: Path,
                  name: str) -> duckdb.DuckDBPyRelation | None:
    """The rows of `name` in provisional files now, copied into a temporary table of `con`,
    or None when no worker ever wrote one (no anchor). Files are unioned by column name, as
    versions written by another release of the worker may differ; the anchor, an empty file
    no one deletes, gives the schema when every version is gone."""
    folder = provisional_dir(warehouse, name)
    if not (folder / ANCHOR).exists():
        return None
    table = f"provisional_{name}"
    paths = sorted(folder.glob("*.parquet"))
    while paths:
        try:
            _copy_files(con, table, paths)
            return con.table(f"temp.{table}")
        except duckdb.IOException:
            left = [path for path in paths if path.exists()]
            if len(left) == len(paths):
                raise  # not a file that went away
            paths = left  # retired and deleted since they were listed: their events are committed
    return None


def _copy_files(con: duckdb.DuckDBPyConnection, table: str, paths: list[Path]) -> None:
    # One statement for all the files: ~0.8 ms a file, against ~2 ms with a statement per
    # file, and a busy worker leaves dozens per table. If a file goes between the listing
    # and the read, the statement fails as a whole and the caller tries again without it.
    files = ", ".join(sql_string(path) for path in paths)
    con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT * FROM read_parquet([{files}], "
                "union_by_name = true, hive_partitioning = false)")


def check_read_only(sql: str, con: duckdb.DuckDBPyConnection | None = None) -> None:
    """Refuse anything but read-only statements. Parsed by `con` when given: the module's
    own extract_statements opens DuckDB's default database (~30 ms in a short command)."""
    try:
        statements = (con or duckdb).extract_statements(sql)
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


def run_query(con: duckdb.DuckDBPyConnection, sql: str) -> tuple[list[str], list[tuple]]:
    check_read_only(sql, con)
    relation = con.execute(sql)
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
