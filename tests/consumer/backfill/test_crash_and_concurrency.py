"""A backfill killed with SIGKILL loses nothing and doubles nothing on rerun, and
readers never see a partial file while a writer appends."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from consumer.query.connection import connect
from devstack.synth import disorder, generate
from tests.support.cli import amlwh, clean_env
from tests.support.events import REPO

pytestmark = pytest.mark.integration
VIEWS = ("runs", "run_status_history", "run_durations", "failure_rates", "monitor_metrics", "models",
         "deployments", "drift")


PARTS = 12  # input files of the crash test: one decode chunk and one commit each


@pytest.fixture(scope="module")
def stream_file(tmp_path_factory) -> tuple[Path, object]:
    stream = generate(1500, seed=99, payload_bytes=1200)
    path = tmp_path_factory.mktemp("stream") / "stream.ndjson"
    path.write_bytes(b"\n".join(disorder(stream.bodies, seed=3)) + b"\n")
    return path, stream


@pytest.fixture(scope="module")
def stream_parts(stream_file) -> tuple[Path, object]:
    """The same stream as PARTS files of ~0.9 MB: a backfill reads at most one 4 MB chunk per
    decode task (backfill/blocks.py), so the 10 MB file alone would be 3 commits, over within a
    second; in parts it is one commit per file, so kills land with most of the work still ahead."""
    path, stream = stream_file
    lines = path.read_bytes().splitlines()
    folder = path.parent / "parts"
    folder.mkdir()
    for n in range(PARTS):
        (folder / f"part-{n:02d}.ndjson").write_bytes(b"\n".join(lines[n::PARTS]) + b"\n")
    return folder, stream


def start_backfill(path: Path, warehouse: Path, batch_rows: int, workers: int) -> subprocess.Popen:
    env = clean_env(AMLWH_WAREHOUSE__PATH=str(warehouse))
    return subprocess.Popen(
        [sys.executable, "-m", "consumer", "backfill", "files", str(path), "--batch-rows", str(batch_rows),
         "--workers", str(workers), "-q"],
        env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def view_rows(warehouse: Path) -> dict[str, list]:
    con = connect(warehouse)
    try:
        return {v: sorted(con.execute(f"SELECT * FROM {v}").fetchall(), key=repr) for v in VIEWS}
    finally:
        con.close()


def committed_files(warehouse: Path) -> list[Path]:
    return sorted(warehouse.rglob("*.parquet"))


def stored_rows(warehouse: Path) -> int:
    return ds.dataset(warehouse / "raw_events", format="parquet", partitioning="hive").count_rows()


def kill_after_new_files(proc: subprocess.Popen, raw_events: Path, new: int, timeout: float = 120) -> int:
    """SIGKILL the backfill once `new` more raw_events files are committed than when it started;
    fail if it finished (or stalled) first. Returns the number of files at the kill."""
    wanted = len(committed_files(raw_events)) + new
    deadline = time.monotonic() + timeout
    while (have := len(committed_files(raw_events))) < wanted:
        if proc.poll() is not None:
            raise AssertionError(f"the backfill exited ({proc.returncode}) with {have} raw_events files, before "
                                 f"the kill point at {wanted}: {proc.stderr.read().decode()[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"only {have} of the {wanted} raw_events files after {timeout}s")
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(30) == -signal.SIGKILL, f"the backfill exited ({proc.returncode}) before the SIGKILL landed"
    return have


@pytest.mark.parametrize("workers", [1, 2], ids=["one-process", "decode-processes"])
def test_sigkill_mid_backfill_then_rerun_equals_a_clean_run_and_the_truth(tmp_path, stream_parts, workers):
    path, stream = stream_parts
    clean = tmp_path / "clean"
    amlwh("backfill", "files", str(path), env={"AMLWH_WAREHOUSE__PATH": str(clean)})
    total_files, total_rows = len(committed_files(clean / "raw_events")), stored_rows(clean)

    crashed = tmp_path / "crashed"
    kills = []
    for attempt in range(3):  # kill at three different points, each after commits of its own
        # (1, 4, 7 new files: one commit writes a file per event date, so at least one commit each)
        proc = start_backfill(path, crashed, batch_rows=400, workers=workers)
        files = kill_after_new_files(proc, crashed / "raw_events", new=1 + attempt * 3)
        for file in committed_files(crashed):  # every visible file is complete
            pq.read_metadata(file)
        kills.append((files, stored_rows(crashed)))
        assert kills[-1][1] < total_rows, f"attempt {attempt} was killed after its last commit: {kills}"
    assert 0 < kills[0][1] < kills[1][1] < kills[2][1], kills  # each attempt stored more before its kill
    print(f"\nkilled at (raw_events files, rows): {kills}; a clean run: {(total_files, total_rows)}")
    amlwh("backfill", "files", str(path), env={"AMLWH_WAREHOUSE__PATH": str(crashed)})

    assert view_rows(crashed) == view_rows(clean)
    con = connect(crashed)
    runs = {r[0]: r[1:] for r in con.execute("SELECT run_id, status, started_at, ended_at FROM runs").fetchall()}
    assert len(runs) == len(stream.runs)
    for run_id, truth in stream.runs.items():
        status, started, ended = runs[run_id]
        assert status == truth.status
        assert int(started.timestamp() * 1e6) == truth.started_us
        assert (ended is None) == (truth.ended_us is None)
        if ended is not None:
            assert int(round(ended.timestamp() * 1e6)) == truth.ended_us


def test_readers_see_only_whole_files_while_a_writer_appends(tmp_path, stream_file):
    path, _ = stream_file
    lines = path.read_bytes().splitlines()
    folder = tmp_path / "parts"
    folder.mkdir()
    for n in range(30):  # 30 files: at least 30 separate commits to overlap with
        (folder / f"part-{n:02d}.ndjson").write_bytes(b"\n".join(lines[n::30]) + b"\n")
    warehouse = tmp_path / "wh"
    proc = start_backfill(folder, warehouse, batch_rows=100, workers=2)
    reads, last_count = 0, 0
    try:
        while proc.poll() is None:
            if (warehouse / "raw_events").is_dir() and committed_files(warehouse / "raw_events"):
                pattern = f"{warehouse}/raw_events/*/*.parquet"
                count = duckdb.connect().execute(
                    f"SELECT count(*) FROM read_parquet('{pattern}', hive_partitioning=true)").fetchone()[0]
                dataset_rows = ds.dataset(warehouse / "raw_events", format="parquet",
                                          partitioning="hive").count_rows()
                con = connect(warehouse)
                con.execute("SELECT count(*) FROM runs").fetchone()
                con.close()
                assert count >= last_count and dataset_rows >= count
                last_count = count
                reads += 1
            time.sleep(0.02)
    finally:
        proc.kill() if proc.poll() is None else None
    assert proc.returncode == 0, proc.stderr.read().decode()
    assert reads >= 3, "the writer finished before readers could overlap it"
