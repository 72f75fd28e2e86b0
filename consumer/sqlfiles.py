"""The DDL and view files under sql/, and the Arrow schemas derived from the DDL.

The DDL is the single definition of each table's columns and types: the writer
asks an in-memory DuckDB for the Arrow schema of each CREATE TABLE.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

import duckdb
import pyarrow as pa

PARTITION_COLUMN = "event_date"


@cache
def table_ddl() -> dict[str, str]:
    """table name -> CREATE TABLE statement, from sql/tables/*.sql."""
    folder = resources.files("sql") / "tables"
    out = {}
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".sql"):
            out[entry.name.removesuffix(".sql")] = entry.read_text()
    return out


@cache
def view_sql() -> tuple[tuple[str, str], ...]:
    """(file name, SQL) of sql/views/*.sql in file-name order (their dependency order)."""
    folder = resources.files("sql") / "views"
    entries = sorted((e for e in folder.iterdir() if e.name.endswith(".sql")), key=lambda e: e.name)
    return tuple((e.name, e.read_text()) for e in entries)


@cache
def table_schemas() -> dict[str, pa.Schema]:
    """table name -> Arrow schema of the columns stored in the files (no partition column)."""
    con = duckdb.connect(":memory:")
    try:
        con.execute("SET TimeZone = 'UTC'")
        schemas = {}
        for name, ddl in table_ddl().items():
            con.execute(ddl)
            schema = con.sql(f"SELECT * FROM {name} LIMIT 0").to_arrow_table().schema
            schemas[name] = schema.remove(schema.get_field_index(PARTITION_COLUMN))
        return schemas
    finally:
        con.close()
