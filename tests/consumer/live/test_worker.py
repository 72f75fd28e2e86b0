"""The live worker end to end: real SDK, local hub, Azurite, Parquet."""

from __future__ import annotations

import asyncio
import urllib.request

import pytest

from consumer.query.connection import connect
from devstack.sdk_helpers import send_events
from devstack.synth import FOREIGN_WORKSPACE, WORKSPACE, disorder, generate, poison_lines
from tests.support.events import run_event
from tests.support.worker import start_worker, stop_worker, wait_for_claims, wait_for_events, wait_until, worker_env

pytestmark = pytest.mark.integration


def expected_runs(stream):
    return {run_id: (t.status, t.started_us, t.ended_us) for run_id, t in stream.runs.items()}


def stored_runs(warehouse):
    con = connect(warehouse)
    try:
        rows = con.execute("SELECT run_id, status, started_at, ended_at FROM runs").fetchall()
    finally:
        con.close()

    def us(ts):
        return None if ts is None else round(ts.timestamp() * 1e6)

    return {r[0]: (r[1], us(r[2]), us(r[3])) for r in rows}


def scrape(metrics_port: int) -> str:
    return urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()


def messages_received(scraped: str) -> int:
    """amlwh_messages_received_total over all partitions, in a scrape of the worker's metrics."""
    return int(sum(float(line.split()[-1]) for line in scraped.splitlines()
                   if line.startswith("amlwh_messages_received_total{")))


def test_worker_end_to_end_then_graceful_stop(tmp_path, local_hub, make_hub, azurite, checkpoint_container):
    import random

    hub = make_hub(4)
    # ~3,000 events: shuffled locally, 1% moved hours later, 2% redelivered, 10% of runs from
    # a workspace the filter rejects, plus poison bodies
    stream = generate(500, seed=21, foreign_share=0.1)
    bodies = disorder(stream.bodies, seed=2, late_share=0.01, dup_share=0.02)
    poison = list(poison_lines(random.Random(1)))
    asyncio.run(send_events(local_hub.connection_string(hub), bodies + poison))
    foreign = {b for b in bodies if FOREIGN_WORKSPACE.encode() in b}
    distinct = len(set(bodies) - foreign)
    assert len(bodies) > 2500 and foreign

    warehouse = tmp_path / "wh"
    from devstack.processes import free_port
    metrics_port = free_port()
    env = worker_env(local_hub.connection_string(hub), azurite.connection_string, checkpoint_container,
                     warehouse, AMLWH_FILTER__WORKSPACES=f'["{WORKSPACE}"]',
                     AMLWH_METRICS__PORT=str(metrics_port), AMLWH_METRICS__HOST="127.0.0.1")
    proc = start_worker(env, tmp_path / "worker.log")
    try:
        assert wait_for_events(warehouse, distinct, timeout=180, proc=proc) == distinct
        scraped = scrape(metrics_port)
        assert messages_received(scraped) == len(bodies) + len(poison)
        assert "amlwh_buffered_events{" in scraped and "amlwh_dead_letters_total{" in scraped
    finally:
        code = stop_worker(proc)
    log = (tmp_path / "worker.log").read_text()
    assert code == 0, log
    assert "Unclosed" not in log and "Traceback" not in log
    assert stored_runs(warehouse) == expected_runs(stream)

    con = connect(warehouse)
    dead = con.execute("SELECT reason, partition_id, partition_offset, sequence_number FROM dead_letters").fetchall()
    ignored = con.execute("SELECT reason, count(DISTINCT event_id) FROM ignored_events GROUP BY 1").fetchall()
    late = con.execute("SELECT count(*) FROM raw_events WHERE late").fetchone()[0]
    con.close()
    # one poison body is an event without topic: with a workspace filter it is filtered
    # (ignored, reason foreign_workspace) before its data is validated
    assert len(dead) == len(poison) - 1
    assert all(pid is not None and off is not None and seq is not None for _, pid, off, seq in dead)
    assert ignored == [("foreign_workspace", len(foreign) + 1)]
    assert late > 0  # hours-late events were written, flagged, and the views above still match

    assert f"received {len(bodies) + len(poison)} message(s)" in log

    # graceful stop checkpointed everything: a restart re-reads nothing. Every partition is
    # claimed (the SDK reads a partition's checkpoint before it reports the claim) and receiving
    # (its link attached); then one new message per partition. A partition delivers in order, so
    # once the worker has received those 4, anything it would re-read came before them: it must
    # have received exactly 4.
    proc = start_worker(env, tmp_path / "worker2.log")
    try:
        wait_for_claims(proc, 4, timeout=60)
        local_hub.wait_for_consumers(hub, 4, timeout=60)
        sentinels = [run_event(f"after-restart-{p}", "Running", "2026-01-01T00:00:00Z", workspace=FOREIGN_WORKSPACE)
                     for p in range(4)]
        for p, body in enumerate(sentinels):
            asyncio.run(send_events(local_hub.connection_string(hub), [body], partition_id=str(p)))
        wait_until(lambda: messages_received(scrape(metrics_port)) >= 4, 60, "the 4 new messages", proc)
    finally:
        assert stop_worker(proc) == 0
    log = (tmp_path / "worker2.log").read_text()
    assert "stopped: flushed and checkpointed 4 partition(s); received 4 message(s)" in log, log


def test_live_worker_and_files_backfill_give_identical_views(tmp_path, local_hub, make_hub, azurite,
                                                               checkpoint_container):
    """Both ingestion paths feed one decoder and one writer: same stream, same views."""
    import subprocess
    import sys

    from tests.support.cli import amlwh
    from tests.support.events import REPO

    hub = make_hub(4)
    stream_file = REPO / "samples" / "demo-stream.ndjson.gz"
    live, files = tmp_path / "live", tmp_path / "files"
    env = worker_env(local_hub.connection_string(hub), azurite.connection_string, checkpoint_container, live)
    amlwh("publish", str(stream_file), "--partition-key", "subject", env=env)
    done = subprocess.run([sys.executable, "-m", "consumer", "run", "--stop-when-idle", "3"], env=env,
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "stopped: flushed and checkpointed 4 partition(s)" in done.stderr
    amlwh("backfill", "files", str(stream_file), env={"AMLWH_WAREHOUSE__PATH": str(files)})

    a, b = connect(live), connect(files)
    try:
        for view in ("runs", "run_status_history", "run_durations", "failure_rates", "models",
                     "deployments", "drift", "monitor_metrics"):
            got, want = (sorted(c.execute(f"SELECT * FROM {view}").fetchall(), key=repr) for c in (a, b))
            assert got == want and got, view
        dead = "SELECT reason, payload FROM dead_letters ORDER BY ALL"
        assert a.execute(dead).fetchall() == b.execute(dead).fetchall()
    finally:
        a.close()
        b.close()


def test_buffered_events_are_visible_at_once_as_provisional_rows(tmp_path, local_hub, make_hub, azurite,
                                                                 checkpoint_container):
    """At the default 30 s lateness nothing live is released for 30 s, yet `runs` shows it
    within a flush; a graceful stop commits it and leaves the provisional files empty."""
    from datetime import datetime, timedelta, timezone

    hub = make_hub(2)
    warehouse = tmp_path / "wh"
    env = worker_env(local_hub.connection_string(hub), azurite.connection_string, checkpoint_container,
                     warehouse, AMLWH_ORDERING__MAX_LATENESS_S="30", AMLWH_WRITER__MAX_SECONDS="1")
    proc = start_worker(env, tmp_path / "worker.log")

    def view(sql):
        con = connect(warehouse)
        try:
            return con.execute(sql).fetchall()
        finally:
            con.close()

    def runs_and_committed():
        """The runs view, then how many events are committed (released by the reorder buffer)
        after it was read: 0 means the runs shown were all still buffered."""
        if not (warehouse / "_provisional").is_dir():
            return [], 0
        con = connect(warehouse)
        try:
            runs = con.execute("SELECT run_id, status FROM runs ORDER BY run_id").fetchall()
            return runs, con.execute("SELECT count(*) FROM raw_events WHERE NOT provisional").fetchone()[0]
        finally:
            con.close()

    try:
        wait_for_claims(proc, 2, timeout=60)
        local_hub.wait_for_consumers(hub, 2, timeout=60)
        now = datetime.now(timezone.utc)
        at = [(now + timedelta(seconds=s)).isoformat() for s in range(3)]
        bodies = [run_event("live-1", "Running", at[0]), run_event("live-1", "Completed", at[1]),
                  run_event("live-2", "Queued", at[2])]
        asyncio.run(send_events(local_hub.connection_string(hub), bodies))

        def shown():  # both runs show as sent, or the reorder buffer released something (too late)
            runs, committed = runs_and_committed()
            return (runs, committed) if runs == [("live-1", "Completed"), ("live-2", "Queued")] or committed else None

        seen, committed = wait_until(shown, 120, "the runs to show", proc)
        assert seen == [("live-1", "Completed"), ("live-2", "Queued")]
        assert committed == 0, "shown only once the reorder buffer had released them, not while it held them"
    finally:
        assert stop_worker(proc) == 0
    assert view("SELECT run_id, status FROM runs ORDER BY run_id") == seen
    assert view("SELECT count(*), bool_or(provisional) FROM raw_events") == [(3, False)]
    assert view("SELECT count(*) FROM store.raw_events WHERE provisional") == [(0,)]  # files emptied
