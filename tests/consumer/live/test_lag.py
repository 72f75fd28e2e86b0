"""Lag arithmetic and the stall watchdog's decision (pure), and the metrics server's routes."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumer.errors import ConfigError
from consumer.live.lag import Lag, Position, later, partition_lag
from consumer.live.metrics import WorkerMetrics, WorkerStats, serve_metrics
from consumer.live.partition import Mark
from consumer.live.watchdog import PartitionWatch, enqueued_position

seqs = st.integers(-1, 10**9)
times = st.integers(1_600_000_000_000_000, 1_900_000_000_000_000)
positions = st.builds(Position, seqs, st.one_of(st.none(), times))


@given(positions, st.one_of(st.none(), positions), times)
def test_lag_counts_events_past_the_durable_one(last, durable, claimed_us):
    got = partition_lag(last, durable, claimed_us)
    expected = max(0, last.sequence_number - (-1 if durable is None else durable.sequence_number))
    assert got.events == expected
    assert got.seconds >= 0
    if got.events == 0:
        assert got.seconds == 0  # caught up is 0 in both


@given(seqs, times, st.integers(0, 10**6), st.integers(1, 10**9))
def test_lag_seconds_is_the_enqueued_time_between_them(seq, durable_us, behind_us, more):
    last = Position(seq + more, durable_us + behind_us)
    assert partition_lag(last, Position(seq, durable_us), 0) == Lag(more, behind_us / 1e6)
    # durable time unknown: counted from the claim, never from before it
    assert partition_lag(last, Position(seq), durable_us + behind_us + 5) == Lag(more, 0.0)


def test_no_report_from_the_hub_is_no_lag():
    assert partition_lag(None, None, 0) == Lag(0, 0.0)


@given(st.one_of(st.none(), positions), st.one_of(st.none(), positions))
def test_later_keeps_the_higher_sequence_whatever_the_order(a, b):
    got, swapped = later(a, b), later(b, a)
    if a is None or b is None:
        assert got == (a or b) and swapped == (a or b)
    else:
        assert got.sequence_number == swapped.sequence_number == max(a.sequence_number, b.sequence_number)


S = 1_000_000  # us


def watch_at(start: int = 0) -> PartitionWatch:
    return PartitionWatch(claimed_mono_us=start, claimed_wall_us=1_767_225_600 * S)


def test_a_partition_receiving_nothing_while_the_hub_enqueues_is_stalled_after_stall_s():
    w = watch_at()
    w.received(Position(0, 1), Position(4, 2), Position(4, 2), now_us=1 * S)
    w.enqueued(Position(4, 2), now_us=2 * S)
    assert not w.stalled(100 * S, 10 * S)  # idle but nothing owed: not stalled
    w.enqueued(Position(9, 3), now_us=100 * S)  # the hub holds 5 more
    assert not w.stalled(109 * S, 10 * S)  # owed for 9s only, although idle for 108s
    assert w.stalled(110 * S, 10 * S)
    w.flagged(110 * S)
    assert not w.stalled(115 * S, 10 * S) and w.stalled(120 * S, 10 * S)  # counted again from the flag


@given(st.lists(st.integers(1, 5 * S), min_size=1, max_size=30))
def test_batches_arriving_within_stall_s_never_stall(gaps):
    w, now, seq = watch_at(), 0, 0
    for gap in gaps:
        now += gap
        w.enqueued(Position(seq + 100), now)  # always behind: a backlog
        assert not w.stalled(now, 5 * S + 1)
        w.received(Position(seq + 1), Position(seq + 10), Position(seq + 100), now)
        seq += 10


def test_nothing_received_compares_with_the_stored_checkpoint_then_the_first_report():
    w = watch_at()
    w.stored = Position(7)
    w.enqueued(Position(7), 0)
    assert not w.stalled(60 * S, 10 * S)  # caught up at the checkpoint
    w.enqueued(Position(8), 1 * S)
    assert w.stalled(11 * S, 10 * S)
    unknown = watch_at()  # no checkpoint known: only an advance over the first report counts
    unknown.enqueued(Position(50), 0)
    assert not unknown.stalled(60 * S, 10 * S)
    unknown.enqueued(Position(51), 60 * S)
    assert unknown.stalled(70 * S, 10 * S)


def test_durable_position_prefers_the_checkpoint_then_the_first_received_event():
    w = watch_at()
    assert w.durable(None) is None
    w.stored = Position(3)
    assert w.durable(None) == Position(3)
    w.received(Position(4, 40), Position(6, 60), None, 0)
    assert w.durable(None) == Position(3, 40)
    assert w.durable(Mark("600", 6, 60)) == Position(6, 60)
    assert w.lag(Mark("600", 6, 60)) == Lag(0, 0.0)


def test_enqueued_position_reads_both_sdk_shapes():
    from datetime import UTC, datetime

    when = datetime(2026, 1, 1, tzinfo=UTC)
    us = int(when.timestamp() * 1e6)
    assert enqueued_position({"sequence_number": 5, "enqueued_time": when, "offset": "9"},
                             sequence_key="sequence_number", time_key="enqueued_time") == Position(5, us)
    props = {"last_enqueued_sequence_number": 8, "last_enqueued_time_utc": when, "is_empty": False}
    assert enqueued_position(props, sequence_key="last_enqueued_sequence_number",
                             time_key="last_enqueued_time_utc") == Position(8, us)
    assert enqueued_position(dict(props, is_empty=True), sequence_key="last_enqueued_sequence_number",
                             time_key="last_enqueued_time_utc") is None
    assert enqueued_position(None, sequence_key="sequence_number", time_key="enqueued_time") is None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_metrics_server_answers_health_readiness_and_metrics():
    metrics = WorkerMetrics()
    metrics.watch(lambda: WorkerStats({}, 3))
    metrics.error("checkpoint_failed")
    state = {"healthy": True, "ready": False}

    def health(ready: bool) -> tuple[bool, str]:
        ok = state["healthy"] and (state["ready"] or not ready)
        return ok, "fine" if ok else "not now"

    port = free_port()
    server = serve_metrics(metrics, health, port, "127.0.0.1")
    try:
        assert http(port, "/healthz") == (200, "fine\n")
        assert http(port, "/readyz") == (503, "not now\n")
        state["ready"] = True
        assert http(port, "/readyz") == (200, "fine\n")
        state["healthy"] = False
        assert http(port, "/healthz") == (503, "not now\n")
        status, text = http(port, "/metrics")
        assert status == 200
        assert 'amlwh_errors_total{kind="checkpoint_failed"} 1.0' in text
        assert "amlwh_pending_rows 3.0" in text and "amlwh_flush_seconds_bucket" in text
        with pytest.raises(ConfigError, match="AMLWH_METRICS__PORT"):
            serve_metrics(WorkerMetrics(), health, port, "127.0.0.1")  # taken: said, not a traceback
    finally:
        server.shutdown()
        server.server_close()
