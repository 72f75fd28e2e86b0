"""Files are cut into newline-aligned blocks; line numbers must survive the cut."""

from __future__ import annotations

import gzip

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumer.backfill import blocks
from consumer.backfill.run import backfill_files
from consumer.errors import BackfillInputError
from transforms.decode import DecodeRules


def lines_with_numbers(path, block_bytes, monkeypatch):
    monkeypatch.setattr(blocks, "CHUNK_BYTES", block_bytes)
    out = []
    for block in blocks.read_blocks(path):
        out += [(block.first_line + i, body) for i, body in enumerate(block.bodies())]
    return out


@pytest.mark.parametrize("block_bytes", [1, 3, 7, 64, 1 << 20])
@pytest.mark.parametrize("gz", [False, True])
def test_line_numbers_survive_any_block_size(tmp_path, monkeypatch, block_bytes, gz):
    text = b'{"a":1}\r\n\n' + b"x" * 50 + b"\n{}\n  \nlast-without-newline"
    path = tmp_path / ("in.ndjson.gz" if gz else "in.ndjson")
    path.write_bytes(gzip.compress(text) if gz else text)
    assert lines_with_numbers(path, block_bytes, monkeypatch) == [
        (1, b'{"a":1}'), (2, b""), (3, b"x" * 50), (4, b"{}"), (5, b"  "), (6, b"last-without-newline")]


def test_whole_json_file_is_one_body_at_line_one(tmp_path, monkeypatch):
    path = tmp_path / "doc.json"
    path.write_bytes(b'{\n  "id": 1\n}\n')
    assert lines_with_numbers(path, 4, monkeypatch) == [(1, b'{\n  "id": 1\n}\n')]


def test_parallel_and_single_process_backfills_store_the_same_rows(tmp_path):
    import pyarrow.dataset as ds

    from consumer.storage.warehouse import ParquetWarehouse
    from devstack.synth import disorder, generate

    stream = tmp_path / "s.ndjson"
    stream.write_bytes(b"\n".join(disorder(generate(300, seed=1).bodies)) + b"\n{bad\n")
    tables, counts = {}, {}
    for workers in (1, 2):
        root = tmp_path / f"wh{workers}"
        summary = backfill_files([stream], ParquetWarehouse(root), DecodeRules(),
                                          batch_rows=700, now_us=lambda: 0, workers=workers)
        assert summary.workers == workers and summary.dead_lettered == 1
        counts[workers] = (summary.bodies, summary.events_decoded, summary.events_written,
                           summary.duplicates_skipped, summary.ignored)
        tables[workers] = {
            name: sorted(ds.dataset(root / name, partitioning="hive").to_table()
                         .drop_columns(["ingested_at"]).to_pylist(), key=repr)
            for name in ("raw_events", "run_events", "dead_letters")}
    assert tables[1] == tables[2]
    assert counts[1] == counts[2] and counts[1][3] > 0  # redeliveries skipped alike


def test_a_file_cut_short_while_backfilled_is_an_input_error_naming_it(tmp_path, monkeypatch):
    monkeypatch.setattr(blocks, "CHUNK_BYTES", 16)
    path = tmp_path / "in.ndjson"
    path.write_bytes(b'{"a":1}\n' * 10)
    cut = list(blocks.read_blocks(path))
    assert [b.first_line for b in cut] == [1, 3, 5, 7, 9]
    path.write_bytes(b'{"a":1}\n' * 4)
    assert cut[1].bodies() == [b'{"a":1}', b'{"a":1}']
    with pytest.raises(BackfillInputError, match=r"in\.ndjson: shorter .* lines from 5"):
        cut[2].bodies()
    path.unlink()
    with pytest.raises(BackfillInputError, match=r"in\.ndjson: cannot read lines from 1"):
        cut[0].bodies()


@pytest.mark.parametrize("workers", [1, 2])
def test_stored_rows_name_their_line_of_the_file(tmp_path, monkeypatch, workers):
    """source_line of events, dead letters and ignored rows is the line in the file, with
    blocks of a few lines each: numbers, and the dead letters' keys, which include them."""
    import pyarrow.dataset as ds

    from consumer.storage.warehouse import ParquetWarehouse
    from devstack.synth import generate

    monkeypatch.setattr(blocks, "CHUNK_BYTES", 4096)
    bodies = generate(40, seed=3).bodies
    lines, expected = [], {}
    for i, body in enumerate(bodies):
        lines.append(body)
        expected[orjson.loads(body)[0]["id"] if body.startswith(b"[") else orjson.loads(body)["id"]] = len(lines)
        if i % 7 == 0:
            lines += [b"", b"{bad"]  # a blank line and a dead letter
    stream = tmp_path / "s.ndjson"
    stream.write_bytes(b"\n".join(lines) + b"\n")
    bad_lines = sorted(n for n, line in enumerate(lines, 1) if line == b"{bad")
    root = tmp_path / "wh"
    backfill_files([stream], ParquetWarehouse(root), DecodeRules(), batch_rows=300,
                            now_us=lambda: 0, workers=workers)

    def table(name):
        return ds.dataset(root / name, partitioning="hive").to_table().to_pylist()

    stored = {}
    for row in table("raw_events"):
        if row["batch_index"] in (None, 0):
            stored[row["event_id"]] = row["source_line"]
    assert stored == {k: v for k, v in expected.items() if k in stored} and len(stored) > 100
    assert sorted(r["source_line"] for r in table("dead_letters")) == bad_lines


def _split_lines(data: bytes) -> list[bytes]:
    """Lines as a reader of the file means them: split at "\\n", one "\\r" before it dropped,
    no empty line after a final newline."""
    lines = data.split(b"\n")
    if not lines[-1]:
        lines.pop()
    return [line[:-1] if line.endswith(b"\r") else line for line in lines]


@given(st.binary(max_size=60) | st.lists(st.sampled_from([b"\n", b"\r", b"\r\n", b"x", b"{}", b" "]),
                                         max_size=30).map(b"".join))
def test_line_views_are_the_lines_of_the_data(data):
    assert [bytes(v) for v in blocks.line_views(data)] == _split_lines(data)


def test_lines_decode_alike_as_views_and_as_bytes():
    from devstack.synth import disorder, generate
    from transforms.fastpath import decode_lines

    data = b"\n".join(disorder(generate(40, seed=3).bodies)) + b"\n{bad\n\n  \r\n[]\n"
    views = blocks.line_views(data)
    as_bytes = [bytes(v) for v in views]
    by_view, view_counts = decode_lines(views, "f", 1, DecodeRules(), 0)
    by_bytes, byte_counts = decode_lines(as_bytes, "f", 1, DecodeRules(), 0)
    assert view_counts == byte_counts and view_counts.blank_lines == 2
    assert by_view.rows == by_bytes.rows and by_view.owners == by_bytes.owners
    from consumer.storage.arrow import to_arrow
    assert all(to_arrow(by_view).tables[n].equals(t) for n, t in to_arrow(by_bytes).tables.items())


@pytest.mark.parametrize("workers", [1, 2])
def test_progress_names_the_file_being_read(tmp_path, monkeypatch, workers):
    from consumer.storage.warehouse import ParquetWarehouse
    from devstack.synth import generate

    monkeypatch.setattr(blocks, "CHUNK_BYTES", 8 << 10)
    first, second = tmp_path / "a.ndjson", tmp_path / "b.ndjson"
    first.write_bytes(b"\n".join(generate(20, seed=1).bodies) + b"\n")
    second.write_bytes(b"\n".join(generate(20, seed=2).bodies) + b"\n")
    named = []
    backfill_files([first, second], ParquetWarehouse(tmp_path / "wh"), DecodeRules(),
                            batch_rows=500, now_us=lambda: 0, workers=workers,
                            progress=lambda summary, path: named.append(path.name),
                            progress_every_s=0)
    assert named[0] == "a.ndjson" and named[-1] == "b.ndjson"
    assert named == sorted(named)  # a's chunks, then b's
