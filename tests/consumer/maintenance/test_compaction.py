"""Compaction on real files: the views do not move, each event is stored once, retired
files go only after their grace, and the writer's key index survives a file vanishing."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumer.maintenance.compaction import compact, maintenance_lock, partitions
from consumer.maintenance.retirement import pending_retirements
from consumer.storage.key_index import KeyIndex
from consumer.storage.layout import table_dir
from consumer.storage.schema import table_ddl
from tests.support.events import RC, corpus_files, run_event
from tests.support.warehouse import committed_files, store_copies, view_rows

KEYS = {"dead_letters": "source_kind, hub, partition_id, sequence_number, source_file, source_line, "
                        "batch_index, reason",
        "ignored_events": "dedupe_key, reason", "model_deployments": "workspace, event_id, model_ordinal"}


def _stream() -> list[bytes]:
    bodies = [p.read_bytes() for p in corpus_files()]
    for i in range(5):
        for step, status in enumerate(("Queued", "Running", ("Completed", "Failed")[i % 2])):
            bodies.append(run_event(f"r{i}", status, f"2025-01-0{1 + i % 3}T10:0{step}:00Z",
                                    experiment=f"exp{i % 2}"))
        bodies.append(run_event(f"r{i}", None, f"2025-01-0{1 + i % 3}T10:09:00Z", event_type=RC))
    return bodies + [b"{broken", b"[1, 2]"]


STREAM = _stream()


def write_batch(root: Path, bodies: list[int], n: int) -> None:
    store_copies(root, [STREAM[i] for i in bodies], n)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(batches=st.lists(st.lists(st.integers(0, len(STREAM) - 1), min_size=1, max_size=15),
                        min_size=2, max_size=5))
def test_compaction_keeps_every_view_and_stores_each_event_once(tmp_path_factory, batches):
    root = tmp_path_factory.mktemp("wh")
    for n, batch in enumerate(batches):
        write_batch(root, batch, n)
    before = view_rows(root)

    report = compact(root, now_s=lambda: 1e9, grace_s=0)

    assert view_rows(root) == before
    for name in table_ddl():
        for folder in partitions(root, name, None):
            files = list(folder.glob("*.parquet"))
            assert len(files) == 1, (name, folder)
            key = KEYS.get(name, "workspace, event_id")
            dupes = duckdb.sql(f"SELECT {key}, count(*) FROM read_parquet('{files[0]}') "
                               "GROUP BY ALL HAVING count(*) > 1").fetchall()
            assert dupes == [], (name, folder)
    assert report.files_after == sum(len(f) for f in committed_files(root).values())
    assert pending_retirements(root) == 0


def test_retired_files_stay_until_their_grace_has_passed(tmp_path):
    for n in range(3):
        write_batch(tmp_path, list(range(n, len(STREAM), 2)), n)
    before = view_rows(tmp_path)
    stored = [p for files in committed_files(tmp_path).values() for p in files]
    inputs = [p for p in stored if sum(q.parent == p.parent for q in stored) >= 2]
    assert inputs

    report = compact(tmp_path, now_s=lambda: 1000.0, grace_s=60)
    assert report.merged and report.deleted == 0
    assert all(p.exists() for p in inputs)  # a reader that listed them may still open them
    assert view_rows(tmp_path) == before  # merged file and its inputs side by side: no doubles

    assert compact(tmp_path, now_s=lambda: 1059.0, grace_s=60, min_files=99).deleted == 0
    later = compact(tmp_path, now_s=lambda: 1060.0, grace_s=60, min_files=99)
    assert later.deleted == len(inputs) and not any(p.exists() for p in inputs)
    assert pending_retirements(tmp_path) == 0
    assert view_rows(tmp_path) == before


def test_only_the_chosen_tables_and_dates_are_merged(tmp_path):
    for n in range(2):
        write_batch(tmp_path, list(range(len(STREAM))), n)
    run_dates = [p.name for p in partitions(tmp_path, "run_events", None)]
    assert len(run_dates) >= 2
    cut = date.fromisoformat(run_dates[1].split("=")[1])

    report = compact(tmp_path, now_s=lambda: 0.0, tables=("run_events",), before=cut, grace_s=0)

    assert {(m.table, f"event_date={m.day}") for m in report.merged} == {("run_events", run_dates[0])}
    assert len(list((table_dir(tmp_path, "run_events") / run_dates[1]).glob("*.parquet"))) == 2
    assert all(len(list(p.glob("*.parquet"))) == 2 for p in partitions(tmp_path, "raw_events", None))


def test_a_second_compaction_skips_while_one_holds_the_lock(tmp_path):
    for n in range(2):
        write_batch(tmp_path, [0, 1, 2], n)
    with maintenance_lock(tmp_path) as held:
        assert held
        assert compact(tmp_path, now_s=lambda: 0.0).busy
    assert not compact(tmp_path, now_s=lambda: 0.0).busy


def test_merged_files_read_with_the_writers_types(tmp_path):
    for n in range(2):
        write_batch(tmp_path, list(range(len(STREAM))), n)
    written = {name: pq.read_schema(files[0]) for name, files in committed_files(tmp_path).items() if files}
    compact(tmp_path, now_s=lambda: 0.0, grace_s=0)
    for name, files in committed_files(tmp_path).items():
        for path in files:
            assert pq.read_schema(path).remove_metadata() == written[name].remove_metadata(), name


def test_the_key_index_lists_again_when_a_file_vanishes_under_it(tmp_path, monkeypatch):
    for n in range(3):
        write_batch(tmp_path, list(range(len(STREAM))), n)
    folder = partitions(tmp_path, "raw_events", None)[0]
    expected = KeyIndex(tmp_path)._stored_keys("raw_events", _day_of(folder))
    real_read = pq.read_table
    compacted = []

    def read_after_a_compaction(path, *args, **kwargs):
        if not compacted:  # the folder was listed; now a compaction replaces its files
            compacted.append(compact(tmp_path, now_s=lambda: 0.0, tables=("raw_events",), grace_s=0))
        return real_read(path, *args, **kwargs)

    monkeypatch.setattr(pq, "read_table", read_after_a_compaction)
    got = KeyIndex(tmp_path)._stored_keys("raw_events", _day_of(folder))
    assert compacted and compacted[0].deleted > 0
    assert got.tolist() == expected.tolist()


def _day_of(folder: Path) -> int:
    return (date.fromisoformat(folder.name.split("=")[1]) - date(1970, 1, 1)).days


def test_a_round_that_waits_out_the_grace_leaves_no_replaced_file(tmp_path):
    for n in range(2):
        write_batch(tmp_path, list(range(len(STREAM))), n)
    clock, waited = [1000.0], []

    def wait(seconds: float) -> None:
        waited.append(seconds)
        clock[0] += seconds

    report = compact(tmp_path, now_s=lambda: clock[0], grace_s=60, wait=wait)
    assert waited == [60] and report.deleted > 0 and pending_retirements(tmp_path) == 0
    assert all(len({p.parent for p in f}) == len(f) for f in committed_files(tmp_path).values())
