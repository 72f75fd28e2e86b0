"""A warehouse as tests compare it: every view's rows, and the committed files."""

from __future__ import annotations

from pathlib import Path

from consumer.query.connection import connect
from consumer.storage.key_index import KeyIndex
from consumer.storage.layout import table_dir
from consumer.storage.schema import table_ddl
from consumer.storage.warehouse import ParquetWarehouse
from tests.support.events import INGESTED_US
from transforms.decode import DecodeRules, decode_body
from transforms.records import Origin
from transforms.rows import TableRows

# every public view and deduplicated table
VIEWS = ("raw_events", "run_events", "model_registrations", "model_deployments", "drift_detections",
         "runs", "run_status_history", "run_durations", "failure_rates", "monitor_metrics",
         "models", "deployments", "drift", "dead_letters", "ignored_events")


def view_rows(root: Path, views: tuple[str, ...] = VIEWS) -> dict[str, list]:
    """Each view's rows, sorted: equal for two warehouses that hold the same events."""
    con = connect(root)
    try:
        return {v: sorted(con.execute(f"SELECT * FROM {v}").fetchall(), key=repr) for v in views}
    finally:
        con.close()


def committed_files(root: Path) -> dict[str, list[Path]]:
    return {name: sorted(table_dir(root, name).glob("*/*.parquet")) for name in table_ddl()}


def store_copies(root: Path, bodies: list[bytes], n: int) -> None:
    """Commit `bodies` (file `batch-<n>.ndjson`, ingested n seconds after INGESTED_US) as a
    writer that has not seen what is stored, as two workers around an ownership change or
    two backfills of one file: events already stored are stored again."""
    rows = TableRows()
    for line, body in enumerate(bodies, start=1):
        origin = Origin("file", file=f"batch-{n}.ndjson", line=line)
        rows.add(decode_body(body, origin, DecodeRules()), INGESTED_US + n * 1_000_000)
    warehouse = ParquetWarehouse(root, now_us=lambda: INGESTED_US + n * 1_000_000)
    warehouse.keys = KeyIndex(Path(root) / "_nothing_stored")
    warehouse.write(rows)
    warehouse.flush()
