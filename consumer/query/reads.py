"""What a statement reads, so that a connection binds only those views and stored tables.

Creating every view and pointing the stored tables at their files costs a connection
~0.1 s before the first statement runs; a query of `models` needs none of the run views,
and `select 1` needs nothing. The statement is parsed by DuckDB itself
(`json_serialize_sql`), and the names it reads are followed through the views' SQL to
the stored tables. Whenever the answer is not certain — a table function such as
`duckdb_views()`, a SHOW, an EXPLAIN, a catalog-qualified or unknown name — the answer
is "everything", and the connection is built whole: skipping a view is only ever done
when the statement provably cannot reach it.
"""

from __future__ import annotations

import json
import re
from functools import cache

import duckdb

from consumer.storage.schema import table_ddl, view_sql

# Table references that read nothing by name, or only through their children.
_CONTAINERS = {"JOIN", "SUBQUERY", "EXPRESSION_LIST", "EMPTY"}
_CREATE = re.compile(r"CREATE VIEW ((?:\w+\.)?\w+) AS(.*)", re.DOTALL)
_READS = re.compile(r"\b(?:FROM|JOIN)\s+((?:\w+\.)?\w+)", re.IGNORECASE)
_COMMENT = re.compile(r"--[^\n]*")


@cache
def view_statements() -> tuple[tuple[str, str, frozenset[str]], ...]:
    """(qualified view name, CREATE VIEW statement, qualified names it reads) of every view
    in sql/views, in file order (their dependency order)."""
    found = []
    for _, text in view_sql():
        for statement in _COMMENT.sub("", text).split(";"):
            match = _CREATE.search(statement)
            if match is not None:
                found.append((qualified(match.group(1)), statement.strip(),
                              {qualified(n.lower()) for n in _READS.findall(match.group(2))}))
    # only the warehouse's names: a view's CTEs and `EXTRACT(x FROM y)` match the pattern too
    known = {name for name, _, _ in found} | {stored_name(t) for t in table_ddl()}
    return tuple((name, statement, frozenset(reads & known)) for name, statement, reads in found)


def qualified(name: str) -> str:
    return name if "." in name else f"main.{name}"


def stored_name(table: str) -> str:
    return f"store.{table}"


def statement_reads(con: duckdb.DuckDBPyConnection, sql: str) -> frozenset[str] | None:
    """The qualified views and stored tables `sql` reads, directly or through views; None
    when that is not certain (then everything must be bound)."""
    try:
        tree = json.loads(con.execute("SELECT json_serialize_sql(?)", [sql]).fetchall()[0][0])
    except duckdb.Error:
        return None
    if tree.get("error"):
        return None  # not a plain SELECT (EXPLAIN, ...) or does not parse: DuckDB will say
    names: set[str] = set()
    ctes: set[str] = set()
    if not _collect(tree.get("statements"), names, ctes):
        return None
    known = {name for name, _, _ in view_statements()} | {stored_name(t) for t in table_ddl()}
    direct = set()
    for name in names:
        if name in known:
            direct.add(name)
        elif not (name.startswith("main.") and name.removeprefix("main.") in ctes):
            return None  # a name the warehouse does not define: let the full build report it
    return closure(direct)


def closure(names: set[str] | frozenset[str]) -> frozenset[str]:
    """`names` and everything they read, through the views."""
    reads = {name: deps for name, _, deps in view_statements()}
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(reads.get(name, ()))
    return frozenset(seen)


def _collect(node, names: set[str], ctes: set[str]) -> bool:
    """Add the base tables under `node` to `names` and CTE names to `ctes`; False when a
    table reference of another kind (a table function, SHOW, PIVOT, ...) appears."""
    if isinstance(node, list):
        return all(_collect(item, names, ctes) for item in node)
    if not isinstance(node, dict):
        return True
    for entry in (node.get("cte_map") or {}).get("map", []):
        ctes.add(entry.get("key", "").lower())
    kind = node.get("type")
    if "class" not in node and "sample" in node and isinstance(kind, str) and not kind.endswith("_NODE"):
        if kind == "BASE_TABLE":
            if node.get("catalog_name"):
                return False
            table = node["table_name"].lower()  # DuckDB's names are case-insensitive
            schema = (node.get("schema_name") or "").lower()
            names.add(qualified(f"{schema}.{table}" if schema else table))
        elif kind not in _CONTAINERS:
            return False
    return all(_collect(value, names, ctes) for value in node.values())
