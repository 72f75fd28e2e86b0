"""The Parquet sink: atomic commits, dedupe against stored keys, clear write errors."""

from __future__ import annotations

import errno

import pyarrow.parquet as pq
import pytest

from consumer.storage.schema import table_schemas
from consumer.storage.warehouse import ParquetWarehouse, WarehouseWriteError
from tests.support.events import run_event
from tests.support.rows import rows_for
from transforms.rows import TABLE_COLUMNS


def test_ddl_and_row_builder_agree_on_every_table():
    for name, schema in table_schemas().items():
        assert tuple(schema.names) + ("event_date",) == TABLE_COLUMNS[name]


def test_encoding_column_lists_name_ddl_columns():
    from consumer.storage.parquet_files import _DICTIONARY_COLUMNS, _STATISTICS_COLUMNS

    columns = {name for schema in table_schemas().values() for name in schema.names}
    assert _DICTIONARY_COLUMNS <= columns and _STATISTICS_COLUMNS <= columns


@pytest.mark.parametrize("configured", ["zstd", "gzip", "none"])
def test_files_use_the_configured_codec_and_zstd_spares_dictionary_dimensions(tmp_path, configured):
    import duckdb

    warehouse = ParquetWarehouse(tmp_path, compression=configured)
    warehouse.write(rows_for([run_event("r1", "Running", "2025-01-01T00:00:00Z",
                                        tags={"k": "v"}, props={"p": "q"})]))
    warehouse.flush()
    (raw,) = tmp_path.glob("raw_events/*/*.parquet")
    (run,) = tmp_path.glob("run_events/*/*.parquet")
    codecs = {}
    for file in (raw, run):
        group = pq.read_metadata(file).row_group(0)
        for i in range(group.num_columns):
            codecs[group.column(i).path_in_schema] = group.column(i).compression
    expected = {"zstd": "ZSTD", "gzip": "GZIP", "none": "UNCOMPRESSED"}[configured]
    light = "SNAPPY" if configured == "zstd" else expected  # dictionary-encoded dimensions
    assert codecs["payload"] == codecs["event_id"] == codecs["event_time"] == expected
    assert codecs["run_properties"] == codecs["run_tags"] == expected  # JSON maps
    assert codecs["workspace"] == codecs["status"] == codecs["experiment_name"] == light
    # mixed codecs in one file are plain Parquet to stock readers
    assert duckdb.sql(f"SELECT run_id, run_properties FROM '{run}'").fetchall() == [("r1", '{"p":"q"}')]


def test_arrow_schemas_match_what_duckdb_derives_from_the_ddl():
    import duckdb

    from consumer.storage.schema import PARTITION_COLUMN, table_ddl

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    for name, ddl in table_ddl().items():
        con.execute(ddl)
        schema = con.sql(f"SELECT * FROM {name} LIMIT 0").to_arrow_table().schema
        expected = schema.remove(schema.get_field_index(PARTITION_COLUMN))
        assert [(f.name, f.type) for f in table_schemas()[name]] == [(f.name, f.type) for f in expected], name


def test_flush_commits_and_second_writer_skips_stored_events(tmp_path):
    bodies = [run_event("r1", "Running", "2025-01-01T00:00:00Z"),
              run_event("r1", "Completed", "2025-01-02T00:00:00Z")]
    first = ParquetWarehouse(tmp_path)
    first.write(rows_for(bodies + bodies[:1]))
    stats = first.flush()
    assert stats.rows["raw_events"] == 2 and stats.duplicates["raw_events"] == 1
    assert stats.rows["run_events"] == 2 and stats.duplicates["run_events"] == 1
    # a new process knows only what is on disk
    second = ParquetWarehouse(tmp_path)
    second.write(rows_for(bodies + [run_event("r2", "Running", "2025-01-02T00:00:00Z")]))
    stats = second.flush()
    assert stats.rows["raw_events"] == 1 and stats.duplicates["raw_events"] == 2
    assert sorted(p.parent.name for p in stats.files) == ["event_date=2025-01-02", "event_date=2025-01-02"]
    for file in tmp_path.rglob("*.parquet"):
        assert pq.read_metadata(file).num_rows >= 1


def test_failed_write_leaves_no_partial_file_keeps_rows_and_explains(tmp_path, monkeypatch):
    sink = ParquetWarehouse(tmp_path)
    sink.write(rows_for([run_event("r1", "Running", "2025-01-01T00:00:00Z")]))

    def disk_full(table, where, **kwargs):
        where.write(b"PAR1 partial")
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path))

    monkeypatch.setattr(pq, "write_table", disk_full)
    with pytest.raises(WarehouseWriteError, match="the disk is full") as info:
        sink.flush()
    assert "Nothing from this flush was acknowledged" in str(info.value)
    assert list(tmp_path.rglob("*.parquet")) == [] and list(tmp_path.rglob(".*.tmp")) == []
    assert sink.pending_rows == 2  # still buffered: a retry can commit them
    monkeypatch.undo()
    assert sink.flush().rows["raw_events"] == 1


def test_fact_rows_follow_their_own_raw_row_when_ids_collide_across_types(tmp_path):
    import orjson

    ws = "/subscriptions/s/resourceGroups/r/providers/Microsoft.MachineLearningServices/workspaces/w"
    same_id = [
        run_event("r1", "Running", "2025-01-01T00:00:00Z", event_id="dup", workspace=ws),
        orjson.dumps({"topic": ws, "id": "dup", "eventType": "Microsoft.MachineLearningServices.ModelRegistered",
                      "eventTime": "2025-01-01T00:00:00Z", "data": {"modelName": "m", "modelVersion": "1"}}),
    ]
    sink = ParquetWarehouse(tmp_path)
    sink.write(rows_for(same_id))
    stats = sink.flush()
    assert stats.rows["raw_events"] == 1 and stats.rows["run_events"] == 1
    assert stats.rows["model_registrations"] == 0


def test_membership_in_stored_keys_matches_numpy_isin():
    import numpy as np
    from hypothesis import given
    from hypothesis import strategies as st

    from consumer.storage.key_index import in_sorted as _in_sorted

    ints = st.integers(-(2**63), 2**63 - 1) | st.integers(-3, 3)

    @given(stored=st.lists(ints, min_size=1, max_size=20), values=st.lists(ints, max_size=20))
    def check(stored, values):
        keys = np.unique(np.array(stored, dtype=np.int64))
        v = np.array(values, dtype=np.int64)
        assert (_in_sorted(v, keys) == np.isin(v, keys)).all()

    check()


def test_kept_rows_by_day_are_the_masked_rows_of_each_day_in_input_order():
    import numpy as np
    import pyarrow as pa
    from hypothesis import given
    from hypothesis import strategies as st

    from consumer.storage.parquet_files import kept_by_day
    from consumer.storage.schema import PARTITION_COLUMN

    # tables as the writer holds them: each sorted by event date; rows numbered in input order
    table_days = st.lists(st.integers(0, 3), max_size=12).map(sorted)

    @given(tables_days=st.lists(table_days, max_size=5), data=st.data())
    def check(tables_days, data):
        tables, number = [], 0
        for days in tables_days:
            tables.append(pa.table({
                "row": pa.array(range(number, number + len(days)), pa.int64()),
                PARTITION_COLUMN: pa.array(days, pa.int32()).cast(pa.date32()),
            }))
            number += len(days)
        keep = np.array(data.draw(st.lists(st.booleans(), min_size=number, max_size=number)),
                        dtype=bool)
        all_days = [d for days in tables_days for d in days]
        expected: dict[int, list[int]] = {}
        for row, (day, kept) in enumerate(zip(all_days, keep)):
            if kept:
                expected.setdefault(day, []).append(row)
        got = {day: [row for part, mask in parts for row, kept in
                     zip(part["row"].to_pylist(), [True] * part.num_rows if mask is None else mask)
                     if kept]
               for day, parts in kept_by_day(tables, keep).items()}
        assert got == expected

    check()
