"""`amlwh run`: the long-running worker.

azure-eventhub's EventHubConsumerClient.receive_batch with the SDK's
BlobCheckpointStore shares partitions between worker processes. Per partition:
decode -> reorder buffer -> shared Parquet sink; a flush makes rows durable,
then each partition is checkpointed no further than its oldest buffered event
(Quix's order: flush sinks, then commit offsets; live/flush_cycle.py, an object the
worker holds and hands its collaborators).
Redelivery after a crash or an ownership change only re-reads events whose
duplicates the views ignore.

Threads: the SDK receives on the event loop, so CPU work there stalls every
partition's receive. Decoding (a partition's batch -> Arrow rows) runs in one
decode thread and Parquet commits in one writer thread (Arrow and zstd release
the GIL), so the loop keeps receiving while both work. Each is a single thread:
per-partition order and one-commit-at-a-time need no more. Flushes run only
from the worker's own timer task, never from an SDK callback the SDK may cancel.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import uuid
from concurrent.futures import ThreadPoolExecutor

from consumer.clock import mono_us, wall_us
from consumer.config import Settings
from consumer.errors import WarehouseWriteError
from consumer.eventhub.checkpoints import RetryState, checkpoint_store
from consumer.eventhub.clients import (
    consumer_client,
    enqueued_us,
    event_body,
    eventhub_name,
    starting_position,
)
from consumer.eventhub.identity import build_credential, close_credential
from consumer.live.compaction_timer import BackgroundCompaction
from consumer.live.flush_cycle import Claim, FlushCycle
from consumer.live.lag import Position
from consumer.live.metrics import PartitionStats, WorkerMetrics, WorkerStats, serve_metrics
from consumer.live.partition import Message, PartitionPipeline
from consumer.live.provisional import ProvisionalFiles
from consumer.live.spill import BodySpill, SpillError, sweep_spill_folders
from consumer.live.watchdog import PartitionMonitor, PartitionWatch, enqueued_position
from consumer.storage.arrow import ArrowBatch, to_arrow
from consumer.storage.layout import SPILL_DIR
from consumer.storage.warehouse import ParquetWarehouse
from consumer.tuning import release_free_memory
from transforms.decode import DecodeResult, DecodeRules

log = logging.getLogger("amlwh.worker")
# Received batches waiting for or in the decode thread, over all partitions: enough to
# keep it busy while the SDK receives, few enough to bound the memory they hold.
_MAX_BATCHES_IN_FLIGHT = 8
# More owned partitions than this per core and the event loop, decode and writer threads
# fall behind at a rate a single partition could sustain.
_PARTITIONS_PER_CORE = 3


class Worker:
    """One `amlwh run` process: the SDK callbacks, the decode and writer threads, the timer
    task, and graceful stop. The flush cycle (`cycle`) is built by `run` once the writer
    thread exists."""

    def __init__(self, settings: Settings, sink: ParquetWarehouse, rules: DecodeRules, *,
                 stop_when_idle_s: float | None = None) -> None:
        self.settings = settings
        self.sink = sink
        self.rules = rules
        self.stop_when_idle_s = stop_when_idle_s  # batch mode: stop once caught up and quiet this long
        self.hub = ""
        self.claims: dict[str, Claim] = {}
        self.closed_counters: list = []  # of partitions closed before stop
        self.stopping = False
        self.fatal: BaseException | None = None
        self.last_activity_us = 0
        self.partition_count = 0
        self.cycle: FlushCycle | None = None
        self.provisional: ProvisionalFiles | None = None  # set by run() when [writer] provisional
        self._stop = asyncio.Event()
        self._flush_wanted = asyncio.Event()
        self._instance = uuid.uuid4().hex[:12]
        self._claims_made = 0
        self._decoder: ThreadPoolExecutor | None = None
        self._decode_slots = asyncio.Semaphore(_MAX_BATCHES_IN_FLIGHT)
        self._committer: ThreadPoolExecutor | None = None
        self.background: list[asyncio.Task] = []  # automatic compaction, the partition monitor
        self.metrics = WorkerMetrics()
        self.receiving_since_us: int | None = None  # monotonic; set once receive_batch runs
        self.unhealthy: str | None = None  # why /healthz fails though the worker still runs
        self._in_callback: set[str] = set()  # partitions whose batch callback is running
        self._over_core_budget = False

    # -- SDK callbacks --------------------------------------------------------
    async def on_partition_initialize(self, context) -> None:
        pid = context.partition_id
        o = self.settings.ordering
        spill = None
        if o.spill:
            self._claims_made += 1  # a fresh folder per claim: a reclaimed partition starts clean
            spill = BodySpill(self.sink.root / SPILL_DIR / self._instance / f"p{pid}-{self._claims_made}")
        pipeline = PartitionPipeline(
            self.hub, pid, self.rules, int(o.max_lateness_s * 1e6), o.max_buffered_events,
            int(o.max_future_skew_s * 1e6), spill=spill)
        self.claims[pid] = Claim(pipeline, context, RetryState(), PartitionWatch(mono_us(), wall_us()))
        self.last_activity_us = mono_us()
        self._share_buffer_budget()
        self.metrics.ownership_changed("claimed")
        log.info("partition %s claimed", pid)
        self._check_core_budget()

    def _check_core_budget(self) -> None:
        """Warn once each time the owned partitions go over the per-core budget."""
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        over = len(self.claims) > _PARTITIONS_PER_CORE * cores
        if over and not self._over_core_budget:
            log.warning("this worker owns %d partitions on %d CPU core(s), more than %d per core: it may "
                        "fall behind; run more workers in consumer group %s, or give this one more cores",
                        len(self.claims), cores, _PARTITIONS_PER_CORE, self.settings.eventhub.consumer_group)
        self._over_core_budget = over

    async def on_partition_close(self, context, reason) -> None:
        pid = context.partition_id
        claim = self.claims.pop(pid, None)
        pipeline = claim.pipeline if claim is not None else None
        if pipeline is not None:
            self.closed_counters.append(pipeline.counters)
            self._share_buffer_budget()
            self._check_core_budget()
            if not self.stopping:
                self.metrics.ownership_changed("lost")
        if pipeline is not None and not self.stopping:
            dropped = pipeline.reset()  # not checkpointed: the new owner re-reads them
            if self.cycle is not None:
                self.cycle.partition_closed(pipeline)
            if pipeline.spill is not None:
                pipeline.spill.close()
            log.warning("partition %s closed (%s): dropped %d buffered event(s) after offset %s",
                        pid, getattr(reason, "name", reason), dropped,
                        pipeline.checkpointed.offset if pipeline.checkpointed else "-")

    def _share_buffer_budget(self) -> None:
        """[ordering] max_buffered_events bounds the whole process, so memory does not grow
        with the number of partitions owned: each gets an equal share."""
        if self.claims:
            share = max(1, self.settings.ordering.max_buffered_events // len(self.claims))
            for claim in self.claims.values():
                claim.pipeline.buffer.max_buffered = share

    async def on_error(self, context, error) -> None:
        pid = getattr(context, "partition_id", None)
        self.metrics.error(f"sdk:{type(error).__name__}")
        log.warning("partition %s: %s: %s (the SDK retries)", pid or "-", type(error).__name__, error)

    async def on_event_batch(self, context, events) -> None:
        if self.stopping or self.fatal:
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
        except Exception as exc:
            # The SDK would report this and carry on with the next batch, whose
            # checkpoint would then cover the one we failed on: stop instead.
            self.metrics.error("processing_failed")
            self._fail(exc, f"partition {pid}: processing failed; stopping without checkpointing it")
        finally:
            self._in_callback.discard(pid)

    async def _process(self, pipeline: PartitionPipeline, events) -> None:
        if events:
            self.last_activity_us = mono_us()
        messages = [
            Message(event_body(e), e.offset, e.sequence_number, enqueued_us(e))
            for e in events
        ]
        max_rows = self.settings.writer.max_rows
        while self.sink.pending_rows >= 2 * max_rows and not (self.stopping or self.fatal):
            await asyncio.sleep(0.005)  # backpressure: the writer is behind
        await self._decode_slots.acquire()  # backpressure: bounded batches in flight
        # Not awaited: the SDK goes on receiving this partition while the batch decodes.
        # The decode thread is FIFO, so a partition's batches are accepted in order; the
        # rows reach the sink in the done-callback, on the loop.
        pipeline.in_flight += 1
        decoded = asyncio.get_running_loop().run_in_executor(
            self._decoder, self._decode, pipeline, messages, mono_us(), wall_us())
        decoded.add_done_callback(lambda fut: self._landed(pipeline, fut))

    @staticmethod
    def _decode(pipeline: PartitionPipeline, messages: list[Message], now_us: int,
                ingested_us: int) -> tuple[ArrowBatch, DecodeResult]:
        rows, bad = pipeline.accept(messages, now_us, ingested_us)  # in the decode thread
        return to_arrow(rows), bad

    def _landed(self, pipeline: PartitionPipeline, fut: asyncio.Future) -> None:
        self._decode_slots.release()
        if fut.cancelled() or fut.exception() is not None:
            # in_flight stays up, so nothing of this partition is checkpointed again; stop
            exc = RuntimeError("decoding cancelled") if fut.cancelled() else fut.exception()
            self._fail(exc, f"partition {pipeline.partition_id}: processing failed; stopping without "
                            "checkpointing it")
            return
        batch, bad = fut.result()
        claim = self.claims.get(pipeline.partition_id)
        if claim is not None and claim.pipeline is pipeline:  # not closed meanwhile
            self.sink.write(batch)
        pipeline.in_flight -= 1
        for dead in bad.dead_letters:
            self.metrics.error(f"dead_letter:{dead.reason}")
            log.warning("dead letter (%s) at partition %s offset %s sequence %s: %s", dead.reason,
                        dead.origin.partition_id, dead.origin.offset, dead.origin.sequence_number,
                        dead.error)
        if self.cycle.due(self.last_activity_us):
            self._flush_wanted.set()

    def _fail(self, exc: BaseException, what: str) -> None:
        """Stop the worker for `exc`. Trouble with the disk under the warehouse (a flush,
        the spill files) is said as what to fix, without a traceback; anything else is a
        bug and is logged with one."""
        if isinstance(exc, SpillError):
            exc = WarehouseWriteError(self.sink.explain(exc))
        elif not isinstance(exc, WarehouseWriteError):
            log.error("%s", what, exc_info=exc)
        self.fatal = self.fatal or exc
        self._stop.set()

    async def _ticker(self) -> None:
        try:
            await self._tick_forever()
        except Exception as exc:  # a dead ticker would stop idle releases silently
            self._fail(exc, "worker timer failed; stopping")

    async def _tick_forever(self) -> None:
        w = self.settings.writer
        interval_us = int(min(1.0, w.max_seconds) * 1e6)
        wake_s = min(interval_us / 1e6, w.idle_flush_s / 2)
        last_tick = mono_us()
        while not self._stop.is_set():
            try:  # woken early when a batch made a flush due
                await asyncio.wait_for(self._flush_wanted.wait(), wake_s)
            except asyncio.TimeoutError:
                pass
            self._flush_wanted.clear()
            if self.stopping or self.fatal:
                continue
            now = mono_us()
            if now - last_tick >= interval_us:
                last_tick = now
                release_free_memory()  # between flushes too: releases re-decode their bodies
                for claim in list(self.claims.values()):
                    pipeline = claim.pipeline
                    if not pipeline.in_flight:  # a busy one releases at the end of its batch anyway
                        released = pipeline.tick(now)
                        if len(released):  # an idle release re-decodes a partition's whole buffer
                            self.sink.write(released)
                            release_free_memory()
                        if self.sink.pending_rows >= self.cycle.burst_rows:  # many released at once
                            await self.cycle.maybe_flush(self.last_activity_us)
            await self.cycle.maybe_flush(self.last_activity_us)
            if self._idle_long_enough(now):
                log.info("no events for %.0fs on %d partition(s): stopping (--stop-when-idle)",
                         self.stop_when_idle_s, len(self.claims))
                self.request_stop()

    def _idle_long_enough(self, now_us: int) -> bool:
        # all partitions must be ours first: the balanced strategy claims one per interval
        if self.stop_when_idle_s is None or len(self.claims) < self.partition_count:
            return False
        return now_us - self.last_activity_us >= self.stop_when_idle_s * 1e6

    # -- lifecycle --------------------------------------------------------------
    def request_stop(self) -> None:
        self._stop.set()

    def stats(self) -> WorkerStats:
        """A snapshot for the metrics endpoint (read from its thread)."""
        now = wall_us()
        partitions = {}
        for pid, c in list(self.claims.items()):
            lag = c.watch.lag(c.pipeline.checkpointed)
            watermark = c.pipeline.buffer.watermark
            partitions[pid] = PartitionStats(
                c.pipeline.counters.snapshot(), len(c.pipeline.buffer), c.retry.failures, lag.events,
                lag.seconds, None if watermark is None else max(0, now - watermark) / 1e6)
        return WorkerStats(partitions, self.sink.pending_rows)

    def health(self, ready: bool) -> tuple[bool, str]:
        """/healthz (`ready` False): running and not failing. /readyz: also receiving, and
        owning a partition or one load-balancing interval into it (a worker with more
        peers than partitions owns none and is still ready)."""
        if self.fatal is not None:
            return False, f"failed: {type(self.fatal).__name__}: {self.fatal}"
        if self.unhealthy is not None:
            return False, self.unhealthy
        if self._stop.is_set():
            return False, "stopping"
        if not ready:
            return True, "ok"
        if self.receiving_since_us is None:
            return False, "not receiving yet"
        waited = (mono_us() - self.receiving_since_us) / 1e6
        if not self.claims and waited < self.settings.eventhub.load_balancing_interval_s:
            return False, "no partition claimed yet"
        return True, f"receiving; {len(self.claims)} partition(s) owned"

    def _busy(self, pid: str) -> bool:
        """Still handling a batch of `pid` (backpressure, decoding): receiving nothing
        meanwhile is the worker's doing, not a stalled link."""
        claim = self.claims.get(pid)
        return pid in self._in_callback or (claim is not None and claim.pipeline.in_flight > 0)

    def _unrecoverable(self, what: str) -> None:
        log.error("%s", what)
        self.unhealthy = what

    async def _flush_before_recovery(self) -> bool:
        if self.stopping or self.fatal:
            return False
        await self.cycle.flush_and_checkpoint()
        return not (self.stopping or self.fatal)

    async def run(self) -> int:
        endpoint = None
        if self.settings.metrics.port:
            self.metrics.watch(self.stats)
            endpoint = serve_metrics(self.metrics, self.health, self.settings.metrics.port,
                                     self.settings.metrics.host)
        try:
            return await self._run()
        finally:
            if endpoint is not None:
                endpoint.shutdown()
                endpoint.server_close()

    async def _run(self) -> int:
        eh = self.settings.eventhub
        self.hub = eventhub_name(eh)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        credential = build_credential(self.settings)  # one Azure AD identity for hub and store, or None
        store = checkpoint_store(self.settings.checkpoint, credential)
        client = consumer_client(
            eh, credential, checkpoint_store=store, load_balancing_strategy=eh.load_balancing_strategy,
            load_balancing_interval=eh.load_balancing_interval_s,
            partition_ownership_expiration_interval=eh.ownership_expiration_s)
        self.last_activity_us = mono_us()
        if self.settings.writer.provisional:
            self.provisional = ProvisionalFiles(self.sink.root, self.settings.warehouse.compression)
        if self.settings.ordering.spill:
            sweep_spill_folders(self.sink.root)
        self._decoder = ThreadPoolExecutor(1, thread_name_prefix="amlwh-decode")
        self._committer = ThreadPoolExecutor(1, thread_name_prefix="amlwh-commit")
        self.cycle = FlushCycle(self.settings.writer, self.sink, self.claims, self.provisional,
                                self._committer, self._fail, self.metrics)
        try:
            await self._receive(store, client, eh)
        finally:
            self._decoder.shutdown(wait=True)
            self._committer.shutdown(wait=True)
            shutil.rmtree(self.sink.root / SPILL_DIR / self._instance, ignore_errors=True)
            await close_credential(credential)
        if self.fatal is not None:
            raise self.fatal
        return 0

    async def _receive(self, store, client, eh) -> None:
        async with store, client:
            if self.stop_when_idle_s is not None:
                self.partition_count = len(await client.get_partition_ids())
            receiving = asyncio.create_task(client.receive_batch(
                self.on_event_batch, max_batch_size=eh.max_batch_size,
                max_wait_time=eh.max_wait_time_s, prefetch=eh.prefetch,
                starting_position=starting_position(eh.starting_position),
                owner_level=0 if eh.owner_level else None, track_last_enqueued_event_properties=True,
                on_partition_initialize=self.on_partition_initialize,
                on_partition_close=self.on_partition_close, on_error=self.on_error))
            self.receiving_since_us = mono_us()
            ticker = asyncio.create_task(self._ticker())
            monitor = PartitionMonitor(
                client, self.claims, store, self.settings.metrics, self.settings.watchdog, self.metrics,
                hub=self.hub, consumer_group=eh.consumer_group,
                busy=self._busy,
                before_recovery=self._flush_before_recovery, on_unrecoverable=self._unrecoverable)
            self.background.append(asyncio.create_task(monitor.run_forever()))
            compaction = None
            if self.settings.compaction.auto:
                compaction = BackgroundCompaction(self.sink.root, self.settings.warehouse.compression,
                                                  self.settings.compaction, lambda: self.cycle.commits,
                                                  self._compaction_round)
                self.background.append(asyncio.create_task(compaction.run_forever()))
            log.info("receiving from %s (consumer group %s)", self.hub, eh.consumer_group)
            stop = asyncio.create_task(self._stop.wait())
            await asyncio.wait({receiving, stop}, return_when=asyncio.FIRST_COMPLETED)
            if compaction is not None:
                compaction.stop()  # killed is safe: the next run finishes its work
            await self._shutdown()
            await client.close()
            for task in (receiving, ticker, stop, *self.background):
                task.cancel()
            await asyncio.gather(receiving, ticker, stop, *self.background, return_exceptions=True)
        if self.fatal is None and receiving.done() and not receiving.cancelled() and receiving.exception():
            raise receiving.exception()

    def _compaction_round(self, seconds: float, ok: bool) -> None:
        if ok:
            self.metrics.compacted(seconds)
        else:
            self.metrics.error("compaction_failed")

    async def _shutdown(self) -> None:
        """Stop taking events, release every buffer, flush, checkpoint."""
        self.stopping = True
        if self.fatal is not None:
            return  # the warehouse failed: nothing more may be acknowledged
        while any(c.pipeline.in_flight for c in self.claims.values()) and self.fatal is None:
            await asyncio.sleep(0.01)  # let batches in the decode thread reach the sink
        for claim in list(self.claims.values()):
            self.sink.write(claim.pipeline.drain())
            if self.sink.pending_rows >= self.cycle.burst_rows:
                await self.cycle.flush_and_checkpoint(final=True)  # bounded, like an idle release
        await self.cycle.flush_and_checkpoint(final=True)
        if self.fatal is None and self.provisional is not None:
            self.provisional.close()  # everything they showed is committed now
        behind = [pid for pid, c in self.claims.items() if c.pipeline.ready is not None]
        if behind:
            log.warning("final checkpoint failed for partition(s) %s: their last durable events "
                        "will be read again (and skipped as duplicates) after a restart",
                        ", ".join(sorted(behind)))
        counters = [c.pipeline.counters for c in self.claims.values()] + self.closed_counters
        log.info(
            "stopped: flushed and checkpointed %d partition(s); received %d message(s), "
            "%d event(s) (%d late), %d dead letter(s), %d ignored",
            len(self.claims) - len(behind), sum(c.messages for c in counters), sum(c.events for c in counters),
            sum(c.late for c in counters), sum(c.dead_letters for c in counters),
            sum(c.ignored for c in counters))

