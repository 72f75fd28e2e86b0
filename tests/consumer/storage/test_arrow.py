"""consumer.batch: row tuples -> typed Arrow columns."""

from __future__ import annotations

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumer.storage.arrow import _column, _utf8_column

texts = st.lists(st.text(max_size=40), min_size=1, max_size=30)


@given(texts)
def test_utf8_bytes_column_equals_value_by_value_conversion(values):
    encoded = tuple(v.encode() for v in values)
    built = _utf8_column(encoded)  # the joined path itself, not its fallback
    assert built is not None
    built.validate(full=True)
    assert built.equals(pa.array(encoded, type=pa.string()))
    assert built.to_pylist() == values


def test_invalid_utf8_is_rejected_as_pa_array_rejects_it():
    with pytest.raises(pa.ArrowInvalid, match="utf8"):
        _column((b"{}", b"\xff\xfe"), pa.string())


@pytest.mark.parametrize("values", [
    (b"abc", "def"),  # str among bytes
    (b"abc", None),  # null among bytes
    (b"abc", bytearray(b"def")),  # other bytes-likes take pa.array's path
])
def test_mixed_columns_convert_as_pa_array_does(values):
    try:
        expected = pa.array(values, type=pa.string())
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError) as exc:
        with pytest.raises(type(exc)):
            _column(values, pa.string())
    else:
        assert _column(values, pa.string()).equals(expected)


def test_slices_of_one_column_stay_correct():
    values = tuple(f"payload-{i}".encode() for i in range(10))
    built = _column(values, pa.string())
    assert built.slice(3, 4).to_pylist() == [v.decode() for v in values[3:7]]


column_values = st.lists(st.sampled_from(["ws-a", "ws-b", "", "é", None]) | st.text(max_size=5),
                         min_size=1, max_size=12).map(tuple)


@given(column_values, st.sampled_from([pa.string(), pa.int64(), pa.timestamp("us", tz="UTC")]))
def test_text_and_null_columns_convert_as_pa_array_does(values, type_):
    try:
        expected = pa.array(values, type=type_)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError) as exc:
        with pytest.raises(type(exc)):
            _column(values, type_)
    else:
        built = _column(values, type_)
        built.validate(full=True)
        assert built.type == expected.type and built.equals(expected)


@pytest.mark.parametrize("values, type_", [
    (("ws",) * 5, pa.string()),
    ((None,) * 5, pa.string()),
    ((None,) * 5, pa.timestamp("us", tz="UTC")),
])
def test_one_value_throughout_is_repeated_not_converted(values, type_, monkeypatch):
    expected = pa.array(values, type=type_)
    monkeypatch.setattr(pa, "array", None)  # the per-value conversion is not called at all
    assert _column(values, type_).equals(expected)


def _pool() -> list[bytes]:
    """Real payloads of every type (deployments of several models, arrays, bad bodies)
    and run events spread over days."""
    from tests.support.events import corpus_files, run_event

    pool = [p.read_bytes() for p in corpus_files()]
    pool += [run_event(f"r{i % 3}", "Running", f"2025-01-0{1 + i % 4}T0{i}:00:00Z") for i in range(8)]
    return pool + [b"{broken"]


POOL = _pool()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(range(len(POOL))), min_size=1, max_size=25))
def test_tables_are_the_full_rows_sorted_by_date_and_facts_point_at_their_raw_row(picks):
    import numpy as np

    from consumer.storage.arrow import OWNER_COLUMN, to_arrow
    from consumer.storage.schema import PARTITION_COLUMN, table_schemas
    from tests.support.rows import full_rows, rows_for

    rows = rows_for([POOL[i] for i in picks])
    batch = to_arrow(rows)
    every = full_rows(rows)
    assert set(batch.tables) == {name for name, table_rows in every.items() if table_rows}
    raw = batch.tables["raw_events"] if "raw_events" in batch.tables else None
    for name, table in batch.tables.items():
        schema = table_schemas()[name]
        # the reference: every column converted by pa.array, rows stably sorted by date
        ordered = sorted(every[name], key=lambda row: row[-1])
        columns = list(zip(*ordered))
        expected = pa.Table.from_arrays(
            [pa.array(columns[i], type=f.type) for i, f in enumerate(schema)]
            + [pa.array(columns[-1], type=pa.int32()).cast(pa.date32())],
            names=list(schema.names) + [PARTITION_COLUMN])
        assert table.drop_columns([c for c in [OWNER_COLUMN] if c in table.column_names]).equals(expected), name
        if OWNER_COLUMN in table.column_names:
            owners = table[OWNER_COLUMN].to_numpy()
            for column in ("dedupe_key", "event_date"):
                assert raw[column].to_numpy()[owners].tolist() == table[column].to_numpy().tolist()
            assert np.all(np.diff(owners) >= 0)
