"""The decode-and-write processes of a parallel backfill (consumer.shards): their
failures reach the operator as clear errors, and a failed commit leaves no raw_events
row whose facts are missing."""

from __future__ import annotations

from pathlib import Path

import pytest

from consumer.backfill import blocks
from consumer.backfill.chunks import Chunk, chunks_of
from consumer.backfill.pool import ShardPool
from consumer.backfill.run import backfill_files
from consumer.errors import BackfillInputError, DecodeProcessError
from consumer.storage.warehouse import ParquetWarehouse, WarehouseWriteError
from devstack.synth import generate
from transforms.decode import DecodeRules


@pytest.fixture()
def stream(tmp_path) -> Path:
    path = tmp_path / "s.ndjson"
    path.write_bytes(b"\n".join(generate(60, seed=5).bodies) + b"\n")
    return path


def chunks(path: Path, monkeypatch) -> list[Chunk]:
    monkeypatch.setattr(blocks, "CHUNK_BYTES", 8 << 10)
    return list(chunks_of([path], DecodeRules(), lambda: 0))


def one_per_key(rows: list[dict]) -> dict:
    """Rows by (dedupe key, model ordinal): the copies of an event's fact row are the same."""
    return {(row["dedupe_key"], row.get("model_ordinal")): row for row in rows}


def stored(root: Path, name: str) -> list[dict]:
    import pyarrow.dataset as ds

    if not (root / name).is_dir():
        return []
    rows = ds.dataset(root / name, partitioning="hive").to_table().drop_columns(["ingested_at"])
    return sorted(rows.to_pylist(), key=repr)


def test_a_failed_share_leaves_no_raw_row_without_its_facts_and_a_rerun_completes(
        tmp_path, stream, monkeypatch):
    """Each process publishes its share of a commit on its own, without waiting for the
    others. A share that cannot be written stops the run; whatever reached the disk still
    has the facts of every raw row, and the rerun ends where a clean run ends."""
    root = tmp_path / "wh"
    root.mkdir()
    (root / "model_registrations").write_text("a file where a table folder belongs")
    pool_chunks = chunks(stream, monkeypatch)
    assert len(pool_chunks) > 4
    with pytest.raises(WarehouseWriteError, match="cannot write to the warehouse at .*model_registrations"):
        with ShardPool(2, ParquetWarehouse(root), read_ahead=2) as pool:
            for number, _ in enumerate(pool.decode(iter(pool_chunks))):
                if number % 3 == 2:
                    pool.commit(wait=False)
            pool.commit()
    facts = {row["dedupe_key"] for name in ("run_events", "model_deployments")
             for row in stored(root, name)}
    raw = stored(root, "raw_events")
    assert all(row["dedupe_key"] in facts for row in raw
               if row["event_type"].rsplit(".", 1)[-1] != "ModelRegistered")
    assert raw and not [row for row in raw if row["event_type"].endswith("ModelRegistered")]

    (root / "model_registrations").unlink()
    clean = tmp_path / "clean"
    for warehouse in (root, clean):
        backfill_files([stream], ParquetWarehouse(warehouse), DecodeRules(),
                                batch_rows=200, now_us=lambda: 0, workers=2)
    assert stored(root, "raw_events") == stored(clean, "raw_events")  # each event stored once
    # The failed run's other process may be stopped between its commit's two groups: fact
    # rows without their raw rows, which the rerun writes again (storage/durable.py). The
    # views keep one copy of each; so must the comparison.
    for name in ("run_events", "model_registrations", "model_deployments"):
        assert one_per_key(stored(root, name)) == one_per_key(stored(clean, name)), name


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
    with pytest.raises(BackfillInputError, match=r"s\.ndjson: shorter"):
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


def test_events_committed_earlier_in_a_run_are_duplicates_later_in_it(tmp_path, stream):
    """A commit's keys count as stored from the moment it is sent: the same events again,
    a few commits later in the same run, are all skipped."""
    again = tmp_path / "again.ndjson"
    again.write_bytes(stream.read_bytes())
    root = tmp_path / "wh"
    summary = backfill_files([stream, again], ParquetWarehouse(root), DecodeRules(),
                                      batch_rows=150, now_us=lambda: 0, workers=2)
    once = backfill_files([stream], ParquetWarehouse(tmp_path / "once"), DecodeRules(),
                                   batch_rows=150, now_us=lambda: 0, workers=2)
    assert summary.events_decoded == 2 * once.events_decoded
    assert summary.events_written == once.events_written
    assert summary.duplicates_skipped == once.duplicates_skipped + once.events_decoded
    assert len(stored(root, "run_events")) == len(stored(tmp_path / "once", "run_events"))
