"""Lag and stall watch of the claimed partitions.

Per claim, a PartitionWatch records what the hub says it enqueued (the SDK's
last-enqueued-event properties of each received batch, and `get_partition_properties`
polled every `[metrics] lag_poll_s` by the PartitionMonitor, off the receive path) and
what the worker received. From that come the lag metrics (live/lag.py) and the stall
watchdog: a partition that received nothing for `[watchdog] stall_s` while the hub
enqueued past what it received is stalled (a link the service stopped serving, a
receiver wedged in the client).

Recovery: the SDK has no public per-partition restart, but its event processor has a
per-partition path already, the one it takes when load balancing gives a partition
away: cancel that partition's receive task. The SDK then closes the consumer, calls
`on_partition_close` (the worker drops what it buffered of it, not checkpointed) and
releases the ownership; the next load-balancing round claims it again (this worker or
another) and attaches a new receiver from the last checkpoint. Before that, the worker
flushes and checkpoints what is durable, so the re-read starts as late as is safe; the
events re-read are deduplicated by the views. When the SDK's internals are not what this
expects (another SDK version), the worker reports itself unhealthy (/healthz 503) so its
supervisor restarts it, which recovers every partition.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from consumer.clock import mono_us
from consumer.config import MetricsSettings, WatchdogSettings
from consumer.live.lag import Lag, Position, later, partition_lag
from consumer.live.metrics import WorkerMetrics
from consumer.live.partition import Mark

log = logging.getLogger("amlwh.worker")
POLL_TIMEOUT_S = 10.0  # one properties request; the next round asks again
# properties requests at once: each opens a management link (in this SDK, a connection),
# so a worker owning many partitions asks a few at a time
POLL_CONCURRENCY = 4


@dataclass
class PartitionWatch:
    """What the worker saw of one claim of a partition. `*_mono_us`: monotonic time here;
    enqueued times: the hub's wall clock, us since the epoch."""

    claimed_mono_us: int
    claimed_wall_us: int
    last_enqueued: Position | None = None  # the most recent report of the hub's last event
    first_received: Position | None = None  # first event received in this claim
    received_seq: int | None = None  # last event received in this claim
    stored: Position | None = None  # the checkpoint the claim started from, when read from the store
    last_batch_mono_us: int = 0
    behind_since_mono_us: int | None = None  # since when the hub is known to hold more than received
    _baseline_seq: int | None = None  # nothing received, checkpoint unknown: the first report

    def received(self, first: Position, last: Position, enqueued: Position | None, now_us: int) -> None:
        """A non-empty batch arrived (`enqueued`: its last-enqueued-event properties)."""
        if self.first_received is None:
            self.first_received = first
        self.received_seq = last.sequence_number
        self.last_batch_mono_us = now_us
        self.last_enqueued = later(later(self.last_enqueued, enqueued), last)
        self._update_behind(now_us)

    def enqueued(self, position: Position, now_us: int) -> None:
        """The hub reported its last enqueued event (a poll)."""
        self.last_enqueued = later(self.last_enqueued, position)
        if self._baseline_seq is None:
            self._baseline_seq = position.sequence_number
        self._update_behind(now_us)

    def _expected(self) -> int | None:
        """The last sequence number the hub owed this claim so far, as far as is known."""
        if self.received_seq is not None:
            return self.received_seq
        if self.stored is not None:
            return self.stored.sequence_number
        return self._baseline_seq

    def _update_behind(self, now_us: int) -> None:
        expected = self._expected()
        behind = (self.last_enqueued is not None and expected is not None
                  and self.last_enqueued.sequence_number > expected)
        if not behind:
            self.behind_since_mono_us = None
        elif self.behind_since_mono_us is None:
            self.behind_since_mono_us = now_us

    def stalled(self, now_us: int, stall_us: int) -> bool:
        """Nothing received for `stall_us` while the hub held more than was received."""
        if self.behind_since_mono_us is None:
            return False
        quiet_since = max(self.behind_since_mono_us, self.last_batch_mono_us, self.claimed_mono_us)
        return now_us - quiet_since >= stall_us

    def flagged(self, now_us: int) -> None:
        """A stall was reported: count the next one from now, not from every poll."""
        self.behind_since_mono_us = now_us

    def durable(self, checkpointed: Mark | None) -> Position | None:
        """The partition's last durable event, as well as it is known."""
        if checkpointed is not None:
            return Position(checkpointed.sequence_number, checkpointed.enqueued_us)
        if self.first_received is not None:  # the claim started right after its checkpoint
            return Position(self.first_received.sequence_number - 1, self.first_received.enqueued_us)
        return self.stored

    def lag(self, checkpointed: Mark | None) -> Lag:
        return partition_lag(self.last_enqueued, self.durable(checkpointed), self.claimed_wall_us)


def enqueued_position(properties: dict[str, Any] | None, *, sequence_key: str, time_key: str) -> Position | None:
    """A Position from the SDK's dicts: last_enqueued_event_properties (`sequence_number`,
    `enqueued_time`) or get_partition_properties (`last_enqueued_sequence_number`,
    `last_enqueued_time_utc`); None when absent or the partition is empty."""
    if not properties or properties.get("is_empty") or properties.get(sequence_key) is None:
        return None
    when = properties.get(time_key)
    enqueued_us = int(when.timestamp() * 1e6) if hasattr(when, "timestamp") else None
    return Position(int(properties[sequence_key]), enqueued_us)


async def reattach_partition(client: Any, partition_id: str) -> bool:
    """Make the SDK re-attach one partition's receiver through its own ownership-loss path
    (see the module doc). False when this SDK's internals are not as expected."""
    for processor in list((getattr(client, "_event_processors", None) or {}).values()):
        tasks = getattr(processor, "_tasks", None)
        cancel = getattr(processor, "_cancel_tasks_for_partitions", None)
        if isinstance(tasks, dict) and callable(cancel) and partition_id in tasks:
            await cancel([partition_id])
            return True
    return False


class PartitionMonitor:
    """Polls the hub for the claimed partitions' last enqueued events and recovers stalled
    ones. Collaborators: `client` (the worker's EventHubConsumerClient), `claims` (the
    worker's, read only), `store` (the checkpoint store, to learn where a claim started),
    `busy(pid)` (the worker is still handling a batch of it: not the hub's fault),
    `before_recovery()` (flush and checkpoint; False when the worker is stopping or failed,
    and nothing may be recovered) and `on_unrecoverable(what, partition=...)`."""

    def __init__(self, client: Any, claims: dict, store: Any, metrics_settings: MetricsSettings,
                 watchdog: WatchdogSettings, metrics: WorkerMetrics, *, hub: str, consumer_group: str,
                 busy: Callable[[str], bool], before_recovery: Callable[[], Awaitable[bool]],
                 on_unrecoverable: Callable[..., None]) -> None:
        self.client = client
        self.claims = claims
        self.store = store
        self.poll_s = metrics_settings.lag_poll_s
        self.watchdog = watchdog
        self.metrics = metrics
        self.hub = hub
        self.consumer_group = consumer_group
        self.busy = busy
        self.before_recovery = before_recovery
        self.on_unrecoverable = on_unrecoverable

    async def run_forever(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            try:
                await self.poll_once()
            except Exception:  # a bug here must not end the lag figures for good
                log.exception("partition monitor round failed; the next one runs in %.0fs", self.poll_s)

    async def poll_once(self) -> None:
        claims = list(self.claims.items())
        await self._read_start_checkpoints(claims)
        slots = asyncio.Semaphore(POLL_CONCURRENCY)
        await asyncio.gather(*(self._poll(pid, claim, slots) for pid, claim in claims))
        if self.watchdog.enabled:
            await self._recover_stalled()

    async def _poll(self, pid: str, claim, slots: asyncio.Semaphore) -> None:
        async with slots:
            try:
                props = await asyncio.wait_for(self.client.get_partition_properties(pid), POLL_TIMEOUT_S)
            except Exception as exc:  # noqa: BLE001 - a failed poll only delays the lag figures
                self.metrics.error("lag_poll")
                log.debug("partition %s: properties not read (%s: %s)", pid, type(exc).__name__, exc,
                          extra={"partition": pid})
                return
        position = enqueued_position(props, sequence_key="last_enqueued_sequence_number",
                                     time_key="last_enqueued_time_utc")
        if position is not None:
            claim.watch.enqueued(position, mono_us())

    async def _read_start_checkpoints(self, claims: list) -> None:
        """For claims that received nothing yet: where the store says they start."""
        waiting = [c for _, c in claims if c.watch.first_received is None and c.watch.stored is None]
        if not waiting:
            return
        namespace = waiting[0].context.fully_qualified_namespace
        try:
            found = await asyncio.wait_for(
                self.store.list_checkpoints(namespace, self.hub, self.consumer_group), POLL_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - the next round asks again
            log.debug("checkpoints not listed (%s: %s)", type(exc).__name__, exc)
            return
        by_pid = {c["partition_id"]: c for c in found if c.get("sequence_number") is not None}
        for claim in waiting:
            checkpoint = by_pid.get(claim.pipeline.partition_id)
            if checkpoint is not None:
                claim.watch.stored = Position(int(checkpoint["sequence_number"]))

    async def _recover_stalled(self) -> None:
        now = mono_us()
        stall_us = int(self.watchdog.stall_s * 1e6)
        stalled = [(pid, c) for pid, c in list(self.claims.items())
                   if c.watch.stalled(now, stall_us) and not self.busy(pid)]
        for pid, claim in stalled:
            watch = claim.watch
            watch.flagged(now)
            self.metrics.stalled(pid)
            received = "-" if watch.received_seq is None else watch.received_seq
            log.warning("partition %s stalled: nothing received for %.0fs while the hub enqueued up to "
                        "sequence %s (last received %s); re-attaching its receiver from the last checkpoint",
                        pid, (now - max(watch.last_batch_mono_us, watch.claimed_mono_us)) / 1e6,
                        watch.last_enqueued.sequence_number, received,
                        extra={"partition": pid, "sequence_number": watch.last_enqueued.sequence_number})
        if not stalled:
            return
        if not await self.before_recovery():  # what is durable is checkpointed: the re-read starts there
            return
        for pid, claim in stalled:
            if self.claims.get(pid) is not claim:
                continue  # closed meanwhile: its receiver is gone already
            if not await reattach_partition(self.client, pid):
                self.on_unrecoverable(f"partition {pid} stalled and this azure-eventhub version offers no "
                                      "way to re-attach one partition: restart the worker", partition=pid)
