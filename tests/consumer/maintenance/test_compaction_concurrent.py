"""Compaction while a live worker, a backfill and a query-hammering process use the same
warehouse: no query fails or loses an event, and the views end as a plain load's."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest

from devstack.sdk_helpers import send_events
from devstack.synth import disorder, generate
from tests.support.cli import amlwh, clean_env
from tests.support.events import REPO
from tests.support.warehouse import committed_files, view_rows
from tests.support.worker import (
    start_worker,
    stop_worker,
    wait_for_claims,
    wait_for_events,
    wait_until,
    worker_env,
)

pytestmark = pytest.mark.integration

# the views without coordinates: the same events give the same rows by any path
HEADLINE = ("runs", "run_status_history", "run_durations", "failure_rates", "monitor_metrics",
            "models", "deployments", "drift")
# replaced files go after 1 s, not 60: readers meet deleted files often and must cope
STRESS = {"AMLWH_COMPACTION__GRACE_S": "1"}


def _ndjson(path, bodies) -> str:
    path.write_bytes(b"\n".join(bodies) + b"\n")
    return str(path)


def test_compaction_beside_a_worker_a_backfill_and_a_query_hammer(
        tmp_path, local_hub, make_hub, azurite, checkpoint_container):
    history, live, files = (disorder(generate(300, seed=s).bodies, seed=s, dup_share=0.03)
                            for s in (41, 42, 43))
    warehouse = tmp_path / "wh"
    env = {"AMLWH_WAREHOUSE__PATH": str(warehouse), **STRESS}
    amlwh("backfill", "files", _ndjson(tmp_path / "history.ndjson", history), "--batch-rows", "200",
          "--no-compact", "-q", env=env)

    stop = tmp_path / "stop-hammer"
    report = tmp_path / "hammer.json"
    hammer = subprocess.Popen([sys.executable, "-m", "tests.support.query_hammer", str(warehouse),
                               str(report), str(stop)], env=clean_env(), cwd=REPO)
    hub = make_hub(2)
    worker = start_worker(worker_env(local_hub.connection_string(hub), azurite.connection_string,
                                     checkpoint_container, warehouse, **STRESS,
                                     AMLWH_COMPACTION__INTERVAL_S="1", AMLWH_COMPACTION__MIN_FILES="2"),
                          tmp_path / "worker.log")
    try:
        wait_for_claims(worker, 2)
        asyncio.run(send_events(local_hub.connection_string(hub), live))
        backfill = subprocess.Popen(
            [sys.executable, "-m", "consumer", "backfill", "files",
             _ndjson(tmp_path / "files.ndjson", files), "--batch-rows", "150", "-q"],
            env=clean_env(**env), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        compactions = 0
        while backfill.poll() is None or compactions < 3:
            amlwh("compact", "--min-files", "2", env=env)
            compactions += 1
        assert backfill.returncode == 0, backfill.stderr.read().decode()
        distinct = len(set(history) | set(live) | set(files))
        assert wait_for_events(warehouse, distinct, timeout=180, proc=worker) == distinct
        wait_until(lambda: "background compaction round 1 " in worker.log_path.read_text(), 60,
                   "a background compaction round", proc=worker)  # the worker compacted too
    finally:
        code = stop_worker(worker)
        stop.touch()
        hammer.wait(60)
    log = (tmp_path / "worker.log").read_text()
    assert code == 0, log[-3000:]
    seen = json.loads(report.read_text())
    clean = not seen["errors"] and not seen["drops"]  # (a bare == would diff thousands of rows)
    assert clean, {k: v[:3] if isinstance(v, list) else v for k, v in seen.items()}
    assert seen["rounds"] >= 5

    reference = tmp_path / "reference"
    amlwh("backfill", "files", str(tmp_path / "history.ndjson"), _ndjson(tmp_path / "live.ndjson", live),
          str(tmp_path / "files.ndjson"), "--no-compact", "-q", env={"AMLWH_WAREHOUSE__PATH": str(reference)})
    expected = view_rows(reference, HEADLINE)
    assert _differing(view_rows(warehouse, HEADLINE), expected) == []
    amlwh("compact", env={**env, "AMLWH_COMPACTION__GRACE_S": "0"})
    assert _differing(view_rows(warehouse, HEADLINE), expected) == []
    assert all(len({p.parent for p in f}) == len(f) for f in committed_files(warehouse).values())


def _differing(got: dict[str, list], expected: dict[str, list]) -> list[str]:
    """The views whose rows differ, with their row counts (not a diff of every row)."""
    return [f"{v}: {len(got[v])} rows, expected {len(expected[v])}; only got "
            f"{sorted(set(got[v]) - set(expected[v]), key=repr)[:3]}, only expected "
            f"{sorted(set(expected[v]) - set(got[v]), key=repr)[:3]}" for v in expected if got[v] != expected[v]]
