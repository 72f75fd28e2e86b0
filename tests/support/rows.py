"""Decoded rows as tests look at them, and an in-memory DuckDB filled with them (no test
logic here)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pyarrow as pa

from consumer.query.connection import connect
from consumer.storage.schema import table_schemas
from tests.support.events import INGESTED_US
from transforms.decode import DecodeRules, decode_body
from transforms.fastpath import decode_lines
from transforms.records import Origin
from transforms.rows import EVENT_TABLES, ROW_COLUMNS, SHARED_COLUMNS, TABLE_COLUMNS, TableRows, event_rows


def full_rows(rows: TableRows) -> dict[str, list[tuple]]:
    """Every table's rows with all its columns (TABLE_COLUMNS): a fact row's shared
    columns filled in from the raw_events row it points at, in plain Python."""
    raw_index = {c: i for i, c in enumerate(TABLE_COLUMNS["raw_events"])}
    out = {}
    for name, table_rows in rows.rows.items():
        if name not in EVENT_TABLES:
            out[name] = list(table_rows)
            continue
        full = []
        for row, owner in zip(table_rows, rows.owners[name], strict=True):
            values = dict(zip(ROW_COLUMNS[name], row, strict=True))  # a row holds exactly these
            raw = rows.rows["raw_events"][owner]
            values.update((c, raw[raw_index[c]]) for c in SHARED_COLUMNS[name])
            full.append(tuple(values[c] for c in TABLE_COLUMNS[name]))
        out[name] = full
    return out


def as_dicts(rows: TableRows) -> dict[str, list[dict]]:
    """Rows as dicts, with UTF-8 bytes shown as the VARCHAR text they are stored as."""
    def value(name: str, column: str, v):
        keep_bytes = name == "dead_letters" and column == "payload"  # a BLOB column
        return v.decode() if isinstance(v, bytes) and not keep_bytes else v

    return {
        name: [{c: value(name, c, v) for c, v in zip(TABLE_COLUMNS[name], row, strict=True)}
               for row in table_rows]
        for name, table_rows in full_rows(rows).items()
    }


def decode_to_rows(body: bytes, origin: Origin | None = None, rules: DecodeRules | None = None):
    origin = origin or Origin("file", file="test.ndjson", line=1)
    result = decode_body(body, origin, rules or DecodeRules())
    rows = TableRows()
    rows.add(result, INGESTED_US)
    return result, as_dicts(rows)


def rows_for(bodies: list[bytes], rules: DecodeRules | None = None) -> TableRows:
    rows = TableRows()
    for line, raw in enumerate(bodies, start=1):
        rows.add(decode_body(raw, Origin("file", file="t.ndjson", line=line), rules or DecodeRules()),
                 INGESTED_US)
    return rows


def held_rows(bodies: list[bytes], partition: str = "3") -> list:
    """What a partition's reorder buffer holds for these bodies (EventRows), as received
    from the hub at offsets 0, 100, 200, ..."""
    held = []
    for seq, body in enumerate(bodies):
        origin = Origin("eventhub", "ns/aml-events", partition, str(seq * 100), seq, INGESTED_US)
        held += [event_rows(e, INGESTED_US) for e in decode_body(body, origin, DecodeRules()).events]
    return held


def memory_views(rows: TableRows):
    """An in-memory DuckDB with the stored tables filled from `rows` and the views created
    (a warehouse without files reads each table from an in-memory `mem.<table>`)."""
    con = connect(Path(tempfile.mkdtemp(prefix="amlwh-empty-")))  # no files: empty store tables
    every = full_rows(rows)
    for name, schema in table_schemas().items():
        table_rows = every[name]
        if not table_rows:
            continue
        columns = list(zip(*table_rows))
        arrays = [pa.array(columns[i], type=f.type) for i, f in enumerate(schema)]
        arrays.append(pa.array(columns[-1], type=pa.date32()))
        arrow = pa.Table.from_arrays(arrays, names=list(schema.names) + ["event_date"])
        con.register("incoming", arrow)
        con.execute(f"INSERT INTO mem.{name} SELECT * FROM incoming")  # store.{name} reads it
        con.unregister("incoming")
    return con


def fast_and_general(lines: list, rules: DecodeRules = DecodeRules()) -> list[tuple]:
    """The backfill's decode of `lines` with its fast paths on, then off (decode_body line by
    line): [fast, general], each the rows as dicts, the owners and every count."""
    out = []
    for fast in (True, False):
        rows, counts = decode_lines(lines, "in.ndjson", 41, rules, INGESTED_US, fast=fast)
        out.append((as_dicts(rows), rows.owners, counts.bodies, counts.blank_lines, counts.events,
                    counts.ignored, counts.dead_letters))
    return out
