"""The DDL and view files under sql/, and the Arrow schemas derived from the DDL.

The DDL is the single definition of each table's columns and types. The writer
maps its types to Arrow itself rather than asking DuckDB: the worker then never
imports DuckDB (~60 MB it would keep), and a unit test checks the mapping
against DuckDB's own Arrow export. pyarrow is imported when the Arrow schemas are
first asked for: queries read the DDL and views here and never need it.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING

if TYPE_CHECKING:
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


_COLUMN = re.compile(r"^\s*([a-z_][a-z0-9_]*)\s+([A-Z]+)\b", re.MULTILINE)


def ddl_columns(ddl: str) -> list[tuple[str, str]]:
    """(column, SQL type) of a CREATE TABLE statement as written in sql/tables."""
    body = ddl[ddl.index("(") + 1: ddl.rindex(")")]
    return _COLUMN.findall(body)


@cache
def table_schemas() -> dict[str, pa.Schema]:
    """table name -> Arrow schema of the columns stored in the files (no partition column)."""
    import pyarrow as pa

    arrow_types = {
        "VARCHAR": pa.string(),
        "BLOB": pa.binary(),
        "BOOLEAN": pa.bool_(),
        "TINYINT": pa.int8(),
        "SMALLINT": pa.int16(),
        "INTEGER": pa.int32(),
        "BIGINT": pa.int64(),
        "DOUBLE": pa.float64(),
        "DATE": pa.date32(),
        "TIMESTAMPTZ": pa.timestamp("us", tz="UTC"),
    }
    schemas = {}
    for name, ddl in table_ddl().items():
        fields = []
        for column, sql_type in ddl_columns(ddl):
            if column == PARTITION_COLUMN:
                continue
            if sql_type not in arrow_types:
                raise ValueError(f"sql/tables/{name}.sql: no Arrow type for {sql_type} ({column})")
            fields.append(pa.field(column, arrow_types[sql_type]))
        schemas[name] = pa.schema(fields)
    return schemas


def sql_string(text: str) -> str:
    """`text` as a SQL string literal."""
    return "'" + str(text).replace("'", "''") + "'"


def read_committed_sql(files) -> str:
    """DuckDB's read of committed files (a glob, or a list of paths) with their event date
    from the folder name; files of another release, with a column more or less, are read
    by column name."""
    source = (sql_string(files) if not isinstance(files, (list, tuple))
              else "[" + ", ".join(sql_string(p) for p in files) + "]")
    return (f"read_parquet({source}, hive_partitioning = true, "
            f"hive_types = {{'{PARTITION_COLUMN}': DATE}}, union_by_name = true)")

