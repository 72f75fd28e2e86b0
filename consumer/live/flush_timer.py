"""The worker's timer task: idle releases, flushes, and --stop-when-idle.

It wakes at least every min(1 s, [writer] max_seconds) and twice per [writer]
idle_flush_s, and at once when a landed batch made a flush due (`wake`). Each interval it
releases what the reorder buffers of idle partitions may let go (a busy partition
releases at the end of its batch anyway), flushing in quarter steps when many rows come
out at once; then it flushes when one is due. Flushes run only from here (and from the
graceful stop), never from an SDK callback, which the SDK may cancel.

A timer that fails stops the worker: a dead timer would stop idle releases and flushes
silently.
"""

from __future__ import annotations

import asyncio
import logging

from consumer.clock import mono_us
from consumer.config import WriterSettings
from consumer.live.flush_cycle import Claim, FlushCycle
from consumer.live.run_state import RunState
from consumer.storage.warehouse import ParquetWarehouse
from consumer.tuning import release_free_memory

log = logging.getLogger("amlwh.worker")


class FlushTimer:
    """Collaborators, passed in: `writer` (its intervals), `sink` (released rows go there),
    `claims` (the worker's owned partitions, read only), `state` (stop, fail, last
    activity) and `cycle` (the flushes). With `stop_when_idle_s`, it requests the stop once
    the worker owns all `partition_count` partitions and no batch arrived for that long."""

    def __init__(self, writer: WriterSettings, sink: ParquetWarehouse, claims: dict[str, Claim],
                 state: RunState, cycle: FlushCycle, *, stop_when_idle_s: float | None = None,
                 partition_count: int = 0) -> None:
        self.writer = writer
        self.sink = sink
        self.claims = claims
        self.state = state
        self.cycle = cycle
        self.stop_when_idle_s = stop_when_idle_s
        self.partition_count = partition_count
        self._flush_wanted = asyncio.Event()

    def wake(self) -> None:
        """A flush is due: look now rather than at the next interval."""
        self._flush_wanted.set()

    async def run(self) -> None:
        try:
            await self._tick_forever()
        except Exception as exc:  # noqa: BLE001 - a dead timer would stop idle releases silently
            self.state.fail(exc, "worker timer failed; stopping")

    async def _tick_forever(self) -> None:
        w = self.writer
        interval_us = int(min(1.0, w.max_seconds) * 1e6)
        wake_s = min(interval_us / 1e6, w.idle_flush_s / 2)
        last_tick = mono_us()
        while not self.state.stop_requested.is_set():
            try:  # woken early when a batch made a flush due
                await asyncio.wait_for(self._flush_wanted.wait(), wake_s)
            except TimeoutError:
                pass
            self._flush_wanted.clear()
            if self.state.halted:
                continue
            now = mono_us()
            if now - last_tick >= interval_us:
                last_tick = now
                await self._release_idle(now)
            await self.cycle.maybe_flush(self.state.last_activity_us)
            if self._idle_long_enough(now):
                log.info("no events for %.0fs on %d partition(s): stopping (--stop-when-idle)",
                         self.stop_when_idle_s, len(self.claims))
                self.state.request_stop()

    async def _release_idle(self, now_us: int) -> None:
        release_free_memory()  # between flushes too: releases re-decode their bodies
        for claim in list(self.claims.values()):
            pipeline = claim.pipeline
            if not pipeline.in_flight:  # a busy one releases at the end of its batch anyway
                released = pipeline.tick(now_us)
                if len(released):  # an idle release re-decodes a partition's whole buffer
                    self.sink.write(released)
                    release_free_memory()
                if self.sink.pending_rows >= self.cycle.burst_rows:  # many released at once
                    await self.cycle.maybe_flush(self.state.last_activity_us)

    def _idle_long_enough(self, now_us: int) -> bool:
        # all partitions must be ours first: the balanced strategy claims one per interval
        if self.stop_when_idle_s is None or len(self.claims) < self.partition_count:
            return False
        return now_us - self.state.last_activity_us >= self.stop_when_idle_s * 1e6
