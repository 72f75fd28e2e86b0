"""What the metrics endpoint (live/metrics.py) asks of a running worker: a stats snapshot
for /metrics, and the answers of /healthz and /readyz. Both are called from the
endpoint's thread, so they read the worker's state and change none of it."""

from __future__ import annotations

import logging

from consumer.clock import mono_us, wall_us
from consumer.live.flush_cycle import Claim
from consumer.live.metrics import PartitionStats, WorkerStats
from consumer.live.run_state import RunState
from consumer.storage.warehouse import ParquetWarehouse

log = logging.getLogger("amlwh.worker")


class WorkerHealth:
    """Collaborators, passed in: `claims` (the worker's owned partitions, read only), `sink`
    (rows pending), `state` (stopping, failed) and `load_balancing_interval_s` (how long a
    worker owning no partition is still ready). `receiving()` is called once the SDK
    receives; `unrecoverable(what)` (the stall watchdog's) makes /healthz fail from then on,
    so the worker's supervisor restarts it."""

    def __init__(self, claims: dict[str, Claim], sink: ParquetWarehouse, state: RunState,
                 load_balancing_interval_s: float) -> None:
        self.claims = claims
        self.sink = sink
        self.state = state
        self.load_balancing_interval_s = load_balancing_interval_s
        self.receiving_since_us: int | None = None  # monotonic; set once receive_batch runs
        self.unhealthy: str | None = None  # why /healthz fails though the worker still runs

    def receiving(self) -> None:
        self.receiving_since_us = mono_us()

    def unrecoverable(self, what: str, *, partition: str | None = None) -> None:
        log.error("%s", what, extra={"partition": partition})
        self.unhealthy = what

    def stats(self) -> WorkerStats:
        """A snapshot for the metrics endpoint."""
        now = wall_us()
        partitions = {}
        for pid, c in list(self.claims.items()):
            lag = c.watch.lag(c.pipeline.checkpointed)
            watermark = c.pipeline.buffer.watermark
            partitions[pid] = PartitionStats(
                c.pipeline.counters.snapshot(), len(c.pipeline.buffer), c.retry.failures, lag.events,
                lag.seconds, None if watermark is None else max(0, now - watermark) / 1e6)
        return WorkerStats(partitions, self.sink.pending_rows)

    def check(self, ready: bool) -> tuple[bool, str]:
        """/healthz (`ready` False): running and not failing. /readyz: also receiving, and
        owning a partition or one load-balancing interval into it (a worker with more
        peers than partitions owns none and is still ready)."""
        fatal = self.state.fatal
        if fatal is not None:
            return False, f"failed: {type(fatal).__name__}: {fatal}"
        if self.unhealthy is not None:
            return False, self.unhealthy
        if self.state.stop_requested.is_set():
            return False, "stopping"
        if not ready:
            return True, "ok"
        if self.receiving_since_us is None:
            return False, "not receiving yet"
        waited = (mono_us() - self.receiving_since_us) / 1e6
        if not self.claims and waited < self.load_balancing_interval_s:
            return False, "no partition claimed yet"
        return True, f"receiving; {len(self.claims)} partition(s) owned"
