"""Provisional files: what the live worker's reorder buffers hold, visible to queries.

The reorder buffer holds each event until the partition's watermark passes it
(`[ordering] max_lateness_s`, 30 s by default), so a view fed only by released
events lags live traffic by that much. Stream processors answer this with early
(speculative) results next to the final ones; here that is one Parquet file per
table and partition, `<warehouse>/_provisional/<table>/<hub>--p<partition>.parquet`,
holding the events still buffered. Each flush replaces the file whole (write a
temporary file, rename over), so a reader that listed it can always open it:
it never disappears, it only goes empty. Query connections read it next to the
committed files with `provisional = true`, and the dedupe views rank committed
copies first, so an event counts once whether it is buffered, released, or both
for a moment (the committed batch lands before the file is replaced).

Nothing here is durable state: a crash leaves the last file behind, and the
partition's next owner re-reads the same events from the checkpoint and
replaces it at its first flush. Stock tools reading `<warehouse>/<table>/` see
committed rows only.
"""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from consumer.batch import OWNER_COLUMN, to_arrow
from consumer.sqlfiles import PARTITION_COLUMN, table_schemas
from transforms.rows import EVENT_TABLES, EventRows, TableRows

PROVISIONAL_DIR = "_provisional"
PROVISIONAL_TABLES = ("raw_events",) + EVENT_TABLES


def provisional_name(hub: str, partition_id: str) -> str:
    """File stem for one partition of one hub (two hubs may share a warehouse)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", f"{hub}--p{partition_id}")


def _empty(name: str) -> pa.Table:
    schema = table_schemas()[name].append(pa.field(PARTITION_COLUMN, pa.date32()))
    return schema.empty_table()


def write_provisional(root: Path, stem: str, held: list[EventRows], compression: str) -> None:
    """Replace the partition's provisional files with these buffered events' rows."""
    rows = TableRows()
    for prepared in held:
        rows.add_event_rows(prepared, False)
    tables = to_arrow(rows).tables
    for name in PROVISIONAL_TABLES:
        table = tables.get(name)
        if table is None:
            table = _empty(name)
        elif OWNER_COLUMN in table.column_names:
            table = table.drop_columns([OWNER_COLUMN])
        folder = Path(root) / PROVISIONAL_DIR / name
        folder.mkdir(parents=True, exist_ok=True)
        temp = folder / f".{stem}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            pq.write_table(table, temp, compression=compression)
            # no fsync: a lost provisional file is rebuilt from the hub by the next owner
            os.replace(temp, folder / f"{stem}.parquet")
        except BaseException:
            temp.unlink(missing_ok=True)
            raise


def provisional_glob(root: Path, name: str) -> Path | None:
    """The glob of a table's provisional files, or None when there are none."""
    folder = Path(root) / PROVISIONAL_DIR / name
    return folder / "*.parquet" if any(folder.glob("*.parquet")) else None
