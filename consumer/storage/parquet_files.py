"""How a table's kept rows become Parquet files: which rows go in each date's file, and how
each column is encoded. ParquetWarehouse.stage_files names, places and publishes the files.
"""

from __future__ import annotations

from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from consumer.storage.schema import PARTITION_COLUMN

# Parquet encoding, by DDL column name (measured on the 100k-event backfill bench file,
# same-run A/B: pq.write_table 4.65 -> 4.03 us/event, files 11% smaller, identical query
# results; pyarrow's default is both on every column). Dictionary encoding where values
# repeat within a file: the dimensions, and what a run's (or model's) events share. Not on
# per-event values (ids, keys, times, payloads): there it only costs a hash table that
# spills over and falls back to plain.
_DICTIONARY_COLUMNS = frozenset({
    "workspace", "workspace_name", "event_type", "schema_kind", "time_source", "data_version",
    "quirks", "reason", "detail", "source_kind", "hub", "partition_id", "source_file",
    "batch_index", "ingested_at", "subject", "run_id", "experiment_id", "experiment_name",
    "run_type", "status", "status_raw", "status_rank", "parent_run_id", "published_pipeline_id",
    "compute_target_type", "step_type", "run_tags", "run_properties", "model_name",
    "model_version", "model_tags", "model_ids", "model_ordinal", "service_name", "compute_type",
    "service_tags", "service_properties", "monitor_id", "monitor_name", "base_dataset_id",
    "target_dataset_id",
})
# Min/max statistics where a filter can skip row groups: times, ordered coordinates and the
# dimensions queries select by. Not on payloads, JSON or hashed/random ids, whose min/max
# prune nothing and cost a compare per value (and footer bytes).
_STATISTICS_COLUMNS = frozenset({
    "event_time", "ingested_at", "enqueued_at", "window_start", "window_end", "sequence_number",
    "source_line", "workspace", "event_type", "status", "reason", "source_kind", "partition_id",
    "experiment_name", "model_name", "service_name",
})

# With zstd configured: the dictionary-encoded columns other than JSON maps hold little
# once encoded (a small dictionary page, run-length indices), and zstd's setup per page
# (ZSTD_createCCtx, 5% of write time in a backfill profile) costs more than it saves on
# them; snappy has almost no setup. Per row, on 6,800-row raw / run files and 190-row
# model files of the backfill bench: 1.31 -> 1.25, 0.86 -> 0.78, 3.80 -> 2.66 us;
# files 1-6% larger. The JSON maps fall back to plain often and compress well: zstd.
_JSON_MAP_COLUMNS = frozenset({
    "run_tags", "run_properties", "model_tags", "model_properties", "service_tags",
    "service_properties",
})
_LIGHT_CODEC = "snappy"

# pq.write_table pays per chunk and column, and combining chunks first copies every column
# (payloads included). Per row, 50k rows written as chunks of k rows vs combined first,
# raw_events / run_events: k=20 2.04 vs 2.04 / 1.94 vs 1.55 us; k=100 1.38 vs 1.85 / 1.00
# vs 1.23; k=2,700 (a backfill chunk) 1.14 vs 1.74 / 0.74 vs 1.13. So only parts this
# small on average are combined (a live worker's small batches, a few late rows per chunk).
_COMBINE_BELOW_ROWS_PER_PART = 64


def _encoding(columns: list[str], compression: str) -> dict:
    """pq.write_table options for a file with these columns, `compression` configured."""
    codec: str | dict[str, str] = compression
    if compression == "zstd":
        codec = {c: _LIGHT_CODEC if c in _DICTIONARY_COLUMNS and c not in _JSON_MAP_COLUMNS
                 else compression for c in columns}
    return {"compression": codec,
            "use_dictionary": [c for c in columns if c in _DICTIONARY_COLUMNS],
            "write_statistics": [c for c in columns if c in _STATISTICS_COLUMNS]}


def write_parts(parts: list[tuple[pa.Table, np.ndarray | None]], drop: list[str], fh: BinaryIO,
                compression: str, row_group_size: int) -> int:
    """Write one date's parts (kept_by_day) as one Parquet file to `fh`; returns its rows.
    A part that loses rows is filtered here, and its copy goes when the file is written,
    before the next date's are made."""
    tables = [part if mask is None else part.filter(pa.array(mask)) for part, mask in parts]
    data = pa.concat_tables(tables).drop_columns(drop)  # the partition lives in the path
    if len(tables) > 1 and data.num_rows < _COMBINE_BELOW_ROWS_PER_PART * len(tables):
        data = data.combine_chunks()
    pq.write_table(data, fh, row_group_size=row_group_size,
                   **_encoding(data.column_names, compression))
    return data.num_rows


def write_batches(batches: pa.RecordBatchReader, schema: pa.Schema, fh: BinaryIO, compression: str,
                  row_group_size: int) -> int:
    """Write a stream of record batches as one Parquet file with the columns typed and
    encoded as the writer's own files (a stored column keeps one type across files, as
    Spark and pyarrow datasets expect); returns its rows. A column the DDL does not know
    (written by another release) keeps its type."""
    fields = [schema.field(f.name) if f.name in schema.names else f for f in batches.schema]
    target = pa.schema(fields)
    rows = 0
    with pq.ParquetWriter(fh, target, **_encoding(target.names, compression)) as writer:
        for batch in batches:
            writer.write_batch(batch.cast(target), row_group_size=row_group_size)
            rows += batch.num_rows
    return rows


def event_days(table: pa.Table) -> np.ndarray:
    """Each row's event_date as days since the epoch (int32, as to_arrow built it)."""
    return table[PARTITION_COLUMN].cast(pa.int32()).to_numpy()


def kept_by_day(tables: list[pa.Table], keep: np.ndarray) -> dict[int, list[tuple]]:
    """Kept rows per event date, in input order, as lazy parts: each a zero-copy slice of one
    date of one table, with the keep-mask of its rows (None: all kept). Each pending table
    is sorted by date, so most tables are one part.

    write_parts filters a part that loses rows when it writes that date: one copy, alive
    only while the date is written. Slicing around each dropped row instead cost per
    column for every slice: dedupe drops ~2% of rows, spread out, so a 2,700-row chunk
    became ~50 slices. Measured on 40 chunks of the 1M bench file with 2% dropped, this
    step plus pq.write_table per row, raw_events / run_events: slices combined
    1.78 / 1.50 us, filtered parts 1.61 / 1.16 us."""
    by_day: dict[int, list[tuple[pa.Table, np.ndarray | None]]] = {}
    offset = 0
    for table in tables:
        n = table.num_rows
        mask = keep[offset:offset + n]
        offset += n
        if not mask.any():
            continue
        days = event_days(table)
        starts = np.flatnonzero(np.r_[True, days[1:] != days[:-1]])
        ends = np.r_[starts[1:], n]
        for start, end in zip(starts.tolist(), ends.tolist()):
            part_mask = mask[start:end]
            if part_mask.all():
                part_mask = None
            elif not part_mask.any():
                continue
            part = table if end - start == n else table.slice(start, end - start)
            by_day.setdefault(int(days[start]), []).append((part, part_mask))
    return by_day
