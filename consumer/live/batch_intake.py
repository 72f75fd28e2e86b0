"""The SDK's batch callback: a partition's received events -> the decode thread -> the sink.

On the event loop, per batch: note what arrived (lag metrics, stall watchdog), wait while
the writer is behind (the sink holds 2 x [writer] max_rows) and while too many batches are
in flight, then hand the batch to the single decode thread without awaiting it, so the SDK
goes on receiving. The decode thread is FIFO, so a partition's batches are accepted in
order; the rows reach the sink in the future's done-callback, back on the loop, and a
batch that makes a flush due wakes the flush timer (live/flush_timer.py).

A batch that fails, in the callback or in the decode thread, stops the worker without
checkpointing it: the SDK would report the error and go on with the next batch, whose
checkpoint would then cover the one that failed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import Executor

from consumer.clock import mono_us, wall_us
from consumer.config import WriterSettings
from consumer.eventhub.clients import enqueued_us, event_body
from consumer.live.flush_cycle import Claim, FlushCycle
from consumer.live.lag import Position
from consumer.live.metrics import WorkerMetrics
from consumer.live.partition import Message, PartitionPipeline
from consumer.live.run_state import RunState
from consumer.live.watchdog import enqueued_position
from consumer.storage.arrow import ArrowBatch, to_arrow
from consumer.storage.warehouse import ParquetWarehouse
from transforms.decode import DecodeResult

log = logging.getLogger("amlwh.worker")
# Received batches waiting for or in the decode thread, over all partitions: enough to
# keep it busy while the SDK receives, few enough to bound the memory they hold.
MAX_BATCHES_IN_FLIGHT = 8


class BatchIntake:
    """on_event_batch for the SDK, and `busy(pid)` for the stall watchdog.

    Collaborators, passed in: `writer` ([writer] max_rows, for backpressure), `sink` (where
    decoded rows go), `claims` (the worker's owned partitions, read only), `state`,
    `metrics` (processing failures, dead letters), `decoder` (the single decode thread),
    `cycle` (whether a flush is due) and `wake_timer()` (asks the flush timer to look now)."""

    def __init__(self, writer: WriterSettings, sink: ParquetWarehouse, claims: dict[str, Claim],
                 state: RunState, metrics: WorkerMetrics, decoder: Executor, cycle: FlushCycle,
                 wake_timer: Callable[[], None]) -> None:
        self.writer = writer
        self.sink = sink
        self.claims = claims
        self.state = state
        self.metrics = metrics
        self.decoder = decoder
        self.cycle = cycle
        self.wake_timer = wake_timer
        self._decode_slots = asyncio.Semaphore(MAX_BATCHES_IN_FLIGHT)
        self._in_callback: set[str] = set()  # partitions whose batch callback is running

    async def on_event_batch(self, context, events) -> None:
        if self.state.halted:
            return  # not processed, not checkpointed: re-read after restart
        pid = context.partition_id
        claim = self.claims.get(pid)
        if claim is None:
            return
        if events:  # for the lag metrics and the stall watchdog
            first, last = events[0], events[-1]
            claim.watch.received(
                Position(first.sequence_number, enqueued_us(first)), Position(last.sequence_number, enqueued_us(last)),
                enqueued_position(context.last_enqueued_event_properties, sequence_key="sequence_number",
                                  time_key="enqueued_time"), mono_us())
        self._in_callback.add(pid)
        try:
            await self._process(claim.pipeline, events)
        except Exception as exc:  # noqa: BLE001 - stops the worker, logged there with its traceback
            self.metrics.error("processing_failed")
            self.state.fail(exc, f"partition {pid}: processing failed; stopping without checkpointing it",
                            partition=pid)
        finally:
            self._in_callback.discard(pid)

    def busy(self, pid: str) -> bool:
        """Still handling a batch of `pid` (backpressure, decoding): receiving nothing
        meanwhile is the worker's doing, not a stalled link."""
        claim = self.claims.get(pid)
        return pid in self._in_callback or (claim is not None and claim.pipeline.in_flight > 0)

    async def _process(self, pipeline: PartitionPipeline, events) -> None:
        if events:
            self.state.last_activity_us = mono_us()
        messages = [
            Message(event_body(e), e.offset, e.sequence_number, enqueued_us(e))
            for e in events
        ]
        max_rows = self.writer.max_rows
        while self.sink.pending_rows >= 2 * max_rows and not self.state.halted:
            await asyncio.sleep(0.005)  # backpressure: the writer is behind
        await self._decode_slots.acquire()  # backpressure: bounded batches in flight
        # Not awaited: the SDK goes on receiving this partition while the batch decodes.
        # The decode thread is FIFO, so a partition's batches are accepted in order; the
        # rows reach the sink in the done-callback, on the loop.
        pipeline.in_flight += 1
        decoded = asyncio.get_running_loop().run_in_executor(
            self.decoder, self._decode, pipeline, messages, mono_us(), wall_us())
        decoded.add_done_callback(lambda fut: self._landed(pipeline, fut))

    @staticmethod
    def _decode(pipeline: PartitionPipeline, messages: list[Message], now_us: int,
                ingested_us: int) -> tuple[ArrowBatch, DecodeResult]:
        rows, bad = pipeline.accept(messages, now_us, ingested_us)  # in the decode thread
        return to_arrow(rows), bad

    def _landed(self, pipeline: PartitionPipeline, fut: asyncio.Future) -> None:
        self._decode_slots.release()
        pid = pipeline.partition_id
        if fut.cancelled() or fut.exception() is not None:
            # in_flight stays up, so nothing of this partition is checkpointed again; stop
            exc = RuntimeError("decoding cancelled") if fut.cancelled() else fut.exception()
            self.state.fail(exc, f"partition {pid}: processing failed; stopping without checkpointing it",
                            partition=pid)
            return
        batch, bad = fut.result()
        claim = self.claims.get(pid)
        if claim is not None and claim.pipeline is pipeline:  # not closed meanwhile
            self.sink.write(batch)
        pipeline.in_flight -= 1
        for dead in bad.dead_letters:
            self.metrics.error(f"dead_letter:{dead.reason}")
            origin = dead.origin
            log.warning("dead letter (%s) at partition %s offset %s sequence %s: %s", dead.reason,
                        origin.partition_id, origin.offset, origin.sequence_number, dead.error,
                        extra={"partition": origin.partition_id, "offset": origin.offset,
                               "sequence_number": origin.sequence_number})
        if self.cycle.due(self.state.last_activity_us):
            self.wake_timer()
