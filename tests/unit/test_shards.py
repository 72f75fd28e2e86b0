"""The decode-and-write processes of a parallel backfill (consumer.shards): their
failures reach the operator as clear errors, and a failed commit leaves no raw_events
row whose facts are missing."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.synth import generate
from consumer import backfill
from consumer.shards import DecodeProcessError, ShardPool
from consumer.warehouse import ParquetWarehouse, WarehouseWriteError
from transforms.decode import DecodeRules


@pytest.fixture()
def stream(tmp_path) -> Path:
    path = tmp_path / "s.ndjson"
    path.write_bytes(b"\n".join(generate(60, seed=5).bodies) + b"\n")
    return path


def chunks(path: Path, monkeypatch) -> list[backfill.Chunk]:
    monkeypatch.setattr(backfill, "CHUNK_BYTES", 8 << 10)
    return list(backfill._chunks([path], DecodeRules(), lambda: 0))


def test_a_write_error_in_the_first_phase_stops_before_any_raw_events_file(tmp_path, stream, monkeypatch):
    root = tmp_path / "wh"
    root.mkdir()
    (root / "run_events").write_text("a file where a table folder belongs")
    pool_chunks = chunks(stream, monkeypatch)
    assert len(pool_chunks) > 4
    with pytest.raises(WarehouseWriteError, match="cannot write to the warehouse at .*run_events"):
        with ShardPool(2, ParquetWarehouse(root), read_ahead=2) as pool:
            for _ in pool.decode(iter(pool_chunks)):
                pass
            pool.commit()
    assert not list(root.glob("raw_events/**/*.parquet"))


def test_a_dead_decode_process_is_reported_by_number(tmp_path, stream, monkeypatch):
    with pytest.raises(DecodeProcessError, match=r"decode process 1 died \(exit code -9\)"):
        with ShardPool(2, ParquetWarehouse(tmp_path / "wh"), read_ahead=2) as pool:
            pool._procs[1].kill()
            pool._procs[1].join()
            for _ in pool.decode(iter(chunks(stream, monkeypatch))):
                pass


def test_an_input_error_in_a_decode_process_names_the_file(tmp_path, stream, monkeypatch):
    pool_chunks = chunks(stream, monkeypatch)
    stream.write_bytes(b"")  # cut short after it was scanned
    with pytest.raises(backfill.BackfillInputError, match=r"s\.ndjson: shorter"):
        with ShardPool(2, ParquetWarehouse(tmp_path / "wh"), read_ahead=2) as pool:
            for _ in pool.decode(iter(pool_chunks)):
                pass


def test_commits_write_each_process_share_and_count_every_row_once(tmp_path, stream, monkeypatch):
    root = tmp_path / "wh"
    pool_chunks = chunks(stream, monkeypatch)
    with ShardPool(2, ParquetWarehouse(root), read_ahead=2) as pool:
        decoded = list(pool.decode(iter(pool_chunks[:3])))
        first = pool.commit()
        decoded += list(pool.decode(iter(pool_chunks[3:])))  # numbered on from the first call
        second = pool.commit()
        assert pool.commit().files == []  # nothing new
    events = sum(part.counts.events for part in decoded)
    assert first.events + second.events == events
    assert first.events > 0 and second.events > 0
    import pyarrow.dataset as ds
    assert ds.dataset(root / "raw_events", partitioning="hive").count_rows() == events
