"""The files as engines beyond this program read them (docs/readers.md): Spark-friendly
types, one schema per table whichever writer wrote a file, and stock readers (pyarrow
datasets, polars, DuckDB) seeing exactly the committed rows with their event date.

One warehouse is built through the real writers: single-process and parallel backfills,
a writer that has not seen what is stored (duplicates), a compaction (merged files and
the view state), a live worker's provisional files and a commit that crashed before its
rename (a hidden temporary file)."""

from __future__ import annotations

import json
import re
import shutil
from collections import Counter
from pathlib import Path

import duckdb
import polars as pl
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from consumer.backfill.run import backfill_files
from consumer.live.provisional import ProvisionalFiles
from consumer.maintenance.compaction import compact
from consumer.query.connection import open_views
from consumer.storage.durable import Publication
from consumer.storage.key_index import KeyIndex
from consumer.storage.layout import PROVISIONAL_DIR, STATE_DIR, table_dir
from consumer.storage.schema import PARTITION_COLUMN, table_ddl, table_schemas
from devstack.synth import disorder, generate
from tests.support.events import INGESTED_US, corpus_files, run_event
from tests.support.rows import held_rows
from tests.support.warehouse import committed_files
from transforms.decode import DecodeRules

PART = re.compile(r"part-\d{8}T\d{6}-c?[0-9a-f]{12}\.parquet")
# the views' order among copies of one event (sql/views/00_deduplicated.sql), as docs/readers.md spells it
ORDER = ["ingested_at", "source_kind", "hub", "partition_id", "sequence_number", "source_file",
         "source_line", "batch_index"]


def _stream(path: Path, runs: int, seed: int) -> Path:
    bodies = disorder(generate(runs, seed=seed, span_s=3 * 86400).bodies, dup_share=0.05)
    others = [b"{broken", b"[1, 2]", b'{"records": [{"time": "2026-01-02T00:00:00Z", "category": "Jobs"}]}']
    path.write_bytes(b"\n".join(bodies + others) + b"\n")  # + dead letters, an ignored document
    return path


def _backfill(root: Path, inputs: list[Path], n: int, *, workers: int = 1, blind: bool = False) -> None:
    from consumer.storage.warehouse import ParquetWarehouse

    warehouse = ParquetWarehouse(root, now_us=lambda: INGESTED_US + n * 1_000_000)
    if blind:  # as a second backfill of the same file racing the first: stores copies
        warehouse.keys = KeyIndex(root / "_nothing_stored")
    backfill_files(inputs, warehouse, DecodeRules(), batch_rows=120, workers=workers,
                   now_us=lambda: INGESTED_US + n * 1_000_000)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    work = tmp_path_factory.mktemp("contract")
    root = work / "warehouse"
    corpus = work / "corpus"
    corpus.mkdir()
    for path in corpus_files():
        shutil.copy(path, corpus / path.name)
    first = _stream(work / "first.ndjson", 40, seed=5)
    _backfill(root, [first, corpus], 0)  # small commits: several files per partition
    _backfill(root, [first, corpus], 1, blind=True)  # every event stored twice
    report = compact(root, now_s=lambda: INGESTED_US / 1e6 + 10, grace_s=0)
    _backfill(root, [_stream(work / "second.ndjson", 20, seed=6)], 2, workers=2)  # decode processes write
    _backfill(root, [first, corpus], 3, blind=True)  # copies beside the merged files
    ProvisionalFiles(root, "zstd").publish(1, [held_rows([
        run_event("buffered", "Running", "2026-01-02T00:00:00Z")])], now=INGESTED_US / 1e6)
    folder = next(table_dir(root, "run_events").iterdir())
    crashed = Publication()  # a commit that died before its rename: never published
    with crashed.create(folder, "part-20260101T000000-0123456789ab.parquet", 0) as fh:
        pq.write_table(pq.read_table(next(folder.glob("*.parquet"))), fh)
    return root, report


def _violations(path: Path) -> list[str]:
    """What Spark would read differently or not at all: unsigned integers, timestamps that
    are not INT64 microseconds adjusted to UTC (INT96, millis, nanos, local time)."""
    found = []
    schema = pq.ParquetFile(path).schema
    for column in (schema.column(i) for i in range(len(schema))):
        logical = json.loads(column.logical_type.to_json())
        kind, timestamp = logical["Type"], column.converted_type.startswith("TIMESTAMP")
        if column.physical_type == "INT96":
            found.append(f"{column.name}: INT96")
        if column.converted_type.startswith("UINT") or (kind == "Int" and not logical["isSigned"]):
            found.append(f"{column.name}: unsigned {logical}")
        if (kind == "Timestamp" or timestamp) and (column.physical_type, logical.get("timeUnit"),
                                                   logical.get("isAdjustedToUTC")) != ("INT64", "microseconds", True):
            found.append(f"{column.name}: {column.physical_type} {logical}")
    return found


def _columns(path: Path) -> list[tuple]:
    """A file's columns as a Parquet reader sees them: name, physical and logical type,
    whether it may be null."""
    schema = pq.ParquetFile(path).schema
    return [(c.name, c.physical_type, c.logical_type.to_json(), c.converted_type, c.max_definition_level)
            for c in (schema.column(i) for i in range(len(schema)))]


def test_every_parquet_file_has_spark_friendly_types(built):
    root, _ = built
    files = sorted(root.rglob("*.parquet"))
    internal = {p.relative_to(root).parts[0] for p in files} - set(table_ddl())
    assert internal == {PROVISIONAL_DIR, STATE_DIR}  # internal files are checked too
    assert {p: _violations(p) for p in files if _violations(p)} == {}


def test_each_table_has_one_schema_across_writer_and_compaction_files(built):
    root, report = built
    for name, files in committed_files(root).items():
        merged = {m.file for m in report.merged if m.table == name}
        assert merged & set(files) and set(files) - merged, name  # both writers' files are here
        expected = table_schemas()[name]
        assert PARTITION_COLUMN not in expected.names  # the partition lives in the path only
        first = _columns(files[0])
        for path in files:
            assert pq.read_schema(path).remove_metadata() == expected, path
            assert _columns(path) == first, path


def _committed_counts(root: Path, name: str) -> Counter:
    counts = Counter()
    for path in committed_files(root)[name]:
        counts[path.parent.name.removeprefix(f"{PARTITION_COLUMN}=")] += pq.ParquetFile(path).metadata.num_rows
    return counts


def test_stock_readers_read_the_committed_rows_with_their_event_date(built):
    root, _ = built
    for name in table_ddl():
        folder = table_dir(root, name)
        expected = _committed_counts(root, name)
        assert expected, name
        by_duckdb = duckdb.sql(f"SELECT {PARTITION_COLUMN}, count(*) FROM read_parquet("
                               f"'{folder}/*/*.parquet', hive_partitioning = true) GROUP BY 1").fetchall()
        assert {day.isoformat(): n for day, n in by_duckdb} == expected, name
        dataset = ds.dataset(folder, format="parquet", partitioning="hive")
        days = dataset.to_table(columns=[PARTITION_COLUMN])[PARTITION_COLUMN].to_pylist()
        assert Counter(days) == expected, name  # pyarrow's hive inference: a string
        by_polars = (pl.scan_parquet(f"{folder}/**/*.parquet", hive_partitioning=True)
                     .group_by(PARTITION_COLUMN).len().collect())
        assert by_polars.schema[PARTITION_COLUMN] == pl.Date, name
        assert {day.isoformat(): n for day, n in by_polars.iter_rows()} == expected, name


def test_the_documented_dedupe_gives_the_views_rows(built):
    root, _ = built
    copies = pl.scan_parquet(f"{table_dir(root, 'run_events')}/*/*.parquet", hive_partitioning=True)
    once = (copies.sort(ORDER, nulls_last=True)
            .unique(subset=["workspace", "event_id"], keep="first", maintain_order=True)
            .select("event_id", *ORDER).collect())
    assert copies.select(pl.len()).collect().item() > once.height  # the files hold copies
    con, _ = open_views(root, provisional=False)
    try:
        view = con.execute(f"SELECT event_id, {', '.join(ORDER)} FROM run_events").fetchall()
    finally:
        con.close()
    assert sorted(once.iter_rows(), key=repr) == sorted(view, key=repr)


def test_table_folders_hold_only_event_date_folders_of_part_files(built):
    """What stock readers are pointed at: nothing in it for them to skip but hidden
    temporaries, which neither `*.parquet` nor pyarrow's default (skip `.` and `_`) takes."""
    root, _ = built
    hidden = []
    for name in table_ddl():
        for folder in table_dir(root, name).iterdir():
            assert folder.is_dir() and re.fullmatch(rf"{PARTITION_COLUMN}=\d{{4}}-\d\d-\d\d", folder.name), folder
            for path in folder.iterdir():
                if path.name.startswith("."):
                    hidden.append(path)
                    assert path.suffix == ".tmp", path
                else:
                    assert PART.fullmatch(path.name), path
        dataset = ds.dataset(table_dir(root, name), format="parquet", partitioning="hive")
        assert sorted(Path(f) for f in dataset.files) == committed_files(root)[name]
    assert hidden  # the crashed commit's file is there, and was read by nobody
