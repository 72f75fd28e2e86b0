"""The worker's metrics, health endpoints and stall watchdog, read over HTTP from a real
worker process against the local hub and Azurite."""

from __future__ import annotations

import asyncio
import os
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from consumer.query.connection import connect
from devstack.processes import free_port
from devstack.sdk_helpers import send_events
from tests.support.events import RC, RSC, run_event
from tests.support.worker import (
    log_tail,
    start_worker,
    stop_worker,
    stored_event_count,
    wait_for_claims,
    wait_until,
    worker_env,
)

pytestmark = pytest.mark.integration


def get(port: int, path: str) -> tuple[int, str]:
    """(HTTP status, body); status 0 while nothing listens (the worker is starting)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except urllib.error.URLError as exc:
        return 0, str(exc.reason)


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    """Every sample of the worker's /metrics: {(name, sorted label items): value}."""
    status, text = get(port, "/metrics")
    assert status == 200, text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: dict, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def lag(port: int, partition: str) -> tuple[float | None, float | None]:
    samples = scrape(port)
    return (value(samples, "amlwh_partition_lag_events", partition=partition),
            value(samples, "amlwh_partition_lag_seconds", partition=partition))


def events(prefix: str, n: int, event_type: str) -> list[bytes]:
    status = "Running" if event_type == RSC else "Completed"
    return [run_event(f"{prefix}-{i}", status, f"2026-01-01T00:{i // 60:02d}:{i % 60:02d}Z", event_type=event_type)
            for i in range(n)]


def stored_runs(warehouse) -> dict[str, str]:
    con = connect(warehouse)
    try:
        return dict(con.execute("SELECT run_id, status FROM runs").fetchall())
    finally:
        con.close()


def test_metrics_follow_events_and_lag_rises_then_returns_to_zero(tmp_path, local_hub, make_hub, azurite,
                                                                   checkpoint_container):
    hub = make_hub(2)
    cs = local_hub.connection_string(hub)
    port = free_port()
    warehouse = tmp_path / "wh"
    env = worker_env(cs, azurite.connection_string, checkpoint_container, warehouse,
                     AMLWH_METRICS__PORT=str(port), AMLWH_METRICS__HOST="127.0.0.1", AMLWH_METRICS__LAG_POLL_S="0.5",
                     AMLWH_WATCHDOG__ENABLED="false", AMLWH_COMPACTION__AUTO="false")
    proc = start_worker(env, tmp_path / "worker.log")
    try:
        wait_until(lambda: get(port, "/healthz")[0] == 200, 30, "/healthz 200", proc)
        wait_for_claims(proc, 2)
        assert wait_until(lambda: get(port, "/readyz")[0] == 200, 30, "/readyz 200", proc)
        local_hub.wait_for_consumers(hub, 2, timeout=30)

        # counters per partition and event type
        asyncio.run(send_events(cs, events("a", 7, RSC) + events("b", 3, RC), partition_id="0"))
        asyncio.run(send_events(cs, events("c", 5, RSC), partition_id="1"))
        expected = {("0", RSC): 7, ("0", RC): 3, ("1", RSC): 5}

        def counted(samples, name):
            return {(pid, t): value(samples, name, partition=pid, event_type=t) for pid, t in expected}

        def all_written():
            samples = scrape(port)
            return counted(samples, "amlwh_events_released_total") == expected and samples

        samples = wait_until(all_written, 60, "every event written, by partition and type", proc)
        assert counted(samples, "amlwh_events_received_total") == expected
        assert value(samples, "amlwh_messages_received_total", partition="0") == 10
        assert value(samples, "amlwh_ownership_changes_total", change="claimed") == 2
        # caught up: everything received is checkpointed, nothing enqueued past it
        wait_until(lambda: lag(port, "0") == (0, 0) and lag(port, "1") == (0, 0), 30, "lag 0 after the first events",
                   proc)
        samples = scrape(port)
        assert value(samples, "amlwh_flush_seconds_count") > 0
        assert value(samples, "amlwh_checkpoint_seconds_count") >= 2

        # the hub holds events back: the worker receives nothing, the lag rises
        local_hub.delay_deliveries(600)
        asyncio.run(send_events(cs, events("d", 4, RSC), partition_id="0"))
        time.sleep(0.05)  # later enqueued times than the first four
        asyncio.run(send_events(cs, events("e", 2, RSC), partition_id="0"))
        _, lag_seconds = wait_until(lambda: (got := lag(port, "0"))[0] == 6 and got, 30,
                                    "lag of 6 events on partition 0", proc)
        assert lag_seconds > 0
        assert lag(port, "1") == (0, 0)
        assert value(scrape(port), "amlwh_events_received_total", partition="0", event_type=RSC) == 7
        assert get(port, "/healthz")[0] == 200  # behind is not failing

        local_hub.reset_faults()  # delivered now: the worker catches up
        wait_until(lambda: lag(port, "0") == (0, 0), 60, "lag back to 0 on partition 0", proc)
        samples = scrape(port)
        assert value(samples, "amlwh_events_released_total", partition="0", event_type=RSC) == 13
        assert get(port, "/healthz")[0] == 200 and get(port, "/readyz")[0] == 200
    finally:
        code = stop_worker(proc)
    log = (tmp_path / "worker.log").read_text()
    assert code == 0, log
    assert stored_event_count(warehouse) == 21


def test_watchdog_reattaches_a_partition_the_hub_stopped_serving(tmp_path, local_hub, make_hub, azurite,
                                                                  checkpoint_container):
    hub = make_hub(2)
    cs = local_hub.connection_string(hub)
    port = free_port()
    warehouse = tmp_path / "wh"
    env = worker_env(cs, azurite.connection_string, checkpoint_container, warehouse,
                     AMLWH_METRICS__PORT=str(port), AMLWH_METRICS__HOST="127.0.0.1", AMLWH_METRICS__LAG_POLL_S="0.5",
                     AMLWH_WATCHDOG__STALL_S="3", AMLWH_COMPACTION__AUTO="false")
    proc = start_worker(env, tmp_path / "worker.log")
    try:
        wait_for_claims(proc, 2)
        local_hub.wait_for_consumers(hub, 2, timeout=30)
        before = events("before", 5, RSC)
        asyncio.run(send_events(cs, before, partition_id="0"))
        wait_until(lambda: stored_event_count(warehouse) == 5, 60, "the first 5 events", proc)
        assert value(scrape(port), "amlwh_stalls_total", partition="0") is None  # never counted yet

        assert local_hub.stall_partition(hub, "0") == 1
        after = events("after", 6, RC)
        asyncio.run(send_events(cs, after, partition_id="0"))
        started = time.monotonic()
        wait_until(lambda: (value(scrape(port), "amlwh_stalls_total", partition="0") or 0) >= 1, 30,
                   "the watchdog to count a stall of partition 0", proc)
        assert time.monotonic() - started >= 2.5  # not before [watchdog] stall_s
        # re-attached: a fresh link is served although the fault still holds the old one
        wait_until(lambda: stored_event_count(warehouse) == 11, 60, "the 6 events sent during the stall", proc)
        samples = scrape(port)
        assert value(samples, "amlwh_stalls_total", partition="1") is None
        assert value(samples, "amlwh_ownership_changes_total", change="lost") >= 1
        wait_until(lambda: lag(port, "0") == (0, 0), 30, "lag back to 0 on partition 0", proc)
    finally:
        code = stop_worker(proc)
    log = (tmp_path / "worker.log").read_text()
    assert code == 0, log_tail(tmp_path / "worker.log")
    assert "partition 0 stalled" in log
    # views exact: each run once, with its status (duplicates of the re-read ignored)
    assert stored_runs(warehouse) == {**{f"before-{i}": "Running" for i in range(5)},
                                      **{f"after-{i}": "Completed" for i in range(6)}}


def test_owning_more_than_three_partitions_per_core_is_warned_once(tmp_path, local_hub, make_hub, azurite,
                                                                   checkpoint_container):
    hub = make_hub(4)
    env = worker_env(local_hub.connection_string(hub), azurite.connection_string, checkpoint_container,
                     tmp_path / "wh", AMLWH_EVENTHUB__LOAD_BALANCING_STRATEGY="greedy",
                     AMLWH_COMPACTION__AUTO="false")
    cpus = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(cpus)})  # the worker inherits one core: 4 partitions are over 3 per core
    try:
        proc = start_worker(env, tmp_path / "worker.log")
    finally:
        os.sched_setaffinity(0, cpus)
    try:
        wait_for_claims(proc, 4)
    finally:
        assert stop_worker(proc) == 0
    log = (tmp_path / "worker.log").read_text()
    assert log.count("more than 3 per core") == 1, log
    assert "owns 4 partitions on 1 CPU core(s)" in log and "run more workers in consumer group $Default" in log
