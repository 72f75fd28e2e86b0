"""Small helpers shared by tests (no test logic here)."""

from __future__ import annotations

from pathlib import Path

from transforms.decode import DecodeRules, decode_body
from transforms.records import Origin
from transforms.rows import EVENT_TABLES, ROW_COLUMNS, SHARED_COLUMNS, TABLE_COLUMNS, TableRows

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "samples"
INGESTED_US = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z


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


WS = ("/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/"
      "Microsoft.MachineLearningServices/workspaces/prod-ws")
RSC = "Microsoft.MachineLearningServices.RunStatusChanged"
RC = "Microsoft.MachineLearningServices.RunCompleted"


def run_event(run_id: str, status: str | None, time: str, *, event_id: str | None = None,
              event_type: str = RSC, experiment: str = "exp", run_type: str | None = None,
              tags: dict | None = None, props: dict | None = None, workspace: str = WS) -> bytes:
    import orjson

    data = {"experimentId": "e-" + experiment, "experimentName": experiment, "runId": run_id,
            "runType": run_type, "runTags": tags or {}, "runProperties": props or {}}
    if status is not None:
        data["runStatus"] = status
    return orjson.dumps({
        "topic": workspace, "subject": f"experiments/e/runs/{run_id}", "eventType": event_type,
        "eventTime": time, "id": event_id or f"{run_id}-{status}-{time}", "data": data,
        "dataVersion": "2",
    })


def rows_for(bodies: list[bytes], rules: DecodeRules | None = None) -> TableRows:
    rows = TableRows()
    for line, raw in enumerate(bodies, start=1):
        rows.add(decode_body(raw, Origin("file", file="t.ndjson", line=line), rules or DecodeRules()),
                 INGESTED_US)
    return rows


def memory_views(rows: TableRows):
    """An in-memory DuckDB with the stored tables filled from `rows` and the views created
    (a warehouse without files reads each table from an in-memory `mem.<table>`)."""
    import tempfile

    import pyarrow as pa

    from consumer.query import connect
    from consumer.sqlfiles import table_schemas

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
