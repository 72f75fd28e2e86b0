"""`amlwh run`: the long-running worker.

azure-eventhub's EventHubConsumerClient.receive_batch with the SDK's
BlobCheckpointStore shares partitions between worker processes. Per partition:
decode -> reorder buffer -> shared Parquet sink; a flush makes rows durable,
then each partition is checkpointed no further than its oldest buffered event
(Quix's order: flush sinks, then commit offsets; live/flush_cycle.py).
Redelivery after a crash or an ownership change only re-reads events whose
duplicates the views ignore.

Threads: the SDK receives on the event loop, so CPU work there stalls every
partition's receive. Decoding (a partition's batch -> Arrow rows) runs in one
decode thread and Parquet commits in one writer thread (Arrow and zstd release
the GIL), so the loop keeps receiving while both work. Each is a single thread:
per-partition order and one-commit-at-a-time need no more. Flushes run only
from the worker's own timer task, never from an SDK callback the SDK may cancel.

The Worker runs one receive and assembles its parts, each handed its collaborators:
- live/ownership.py: the SDK's claim and close callbacks (a pipeline per partition);
- live/batch_intake.py: the SDK's batch callback, backpressure and the decode thread;
- live/flush_timer.py: the timer task (idle releases, flushes, --stop-when-idle);
- live/flush_cycle.py: flush, commit, checkpoint;
- live/watchdog.py: lag polls and stalled partitions;
- live/health.py: the stats and health answers of the metrics endpoint;
- live/run_state.py: the stop request and the stop and failure flags they all check.
The graceful stop (drain, flush, final checkpoint) is the Worker's own.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import signal
import uuid
from concurrent.futures import ThreadPoolExecutor

from consumer.clock import mono_us
from consumer.config import Settings
from consumer.eventhub.checkpoints import checkpoint_store
from consumer.eventhub.clients import consumer_client, eventhub_name, starting_position
from consumer.eventhub.identity import build_credential, close_credential
from consumer.live.batch_intake import BatchIntake
from consumer.live.compaction_timer import BackgroundCompaction
from consumer.live.flush_cycle import Claim, FlushCycle
from consumer.live.flush_timer import FlushTimer
from consumer.live.health import WorkerHealth
from consumer.live.metrics import WorkerMetrics, serve_metrics
from consumer.live.ownership import PartitionOwnership
from consumer.live.partition import PartitionCounters
from consumer.live.provisional import ProvisionalFiles
from consumer.live.run_state import RunState
from consumer.live.spill import sweep_spill_folders
from consumer.live.watchdog import PartitionMonitor
from consumer.storage.layout import SPILL_DIR
from consumer.storage.warehouse import ParquetWarehouse
from transforms.decode import DecodeRules

log = logging.getLogger("amlwh.worker")


class Worker:
    """One `amlwh run` process. What lives as long as the Worker (the claims, the run state,
    the metrics and health answers) is made here; what needs the run (the threads, the
    flush cycle, the SDK callbacks, the timer) is made by `run`."""

    def __init__(self, settings: Settings, sink: ParquetWarehouse, rules: DecodeRules, *,
                 stop_when_idle_s: float | None = None) -> None:
        self.settings = settings
        self.sink = sink
        self.rules = rules
        self.stop_when_idle_s = stop_when_idle_s  # batch mode: stop once caught up and quiet this long
        self.hub = ""
        self.claims: dict[str, Claim] = {}
        self.state = RunState(sink.explain)
        self.metrics = WorkerMetrics()
        self.health = WorkerHealth(self.claims, sink, self.state, settings.eventhub.load_balancing_interval_s)
        self.cycle: FlushCycle | None = None  # set by run() once the writer thread exists
        self.provisional: ProvisionalFiles | None = None  # set by run() when [writer] provisional
        self.background: list[asyncio.Task] = []  # automatic compaction, the partition monitor
        self._spill_folder = sink.root / SPILL_DIR / uuid.uuid4().hex[:12]  # this worker's

    def request_stop(self) -> None:
        self.state.request_stop()

    async def run(self) -> int:
        endpoint = None
        if self.settings.metrics.port:
            self.metrics.watch(self.health.stats)
            endpoint = serve_metrics(self.metrics, self.health.check, self.settings.metrics.port,
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
        self.state.last_activity_us = mono_us()
        remote = self.sink.remote is not None
        if remote and self.settings.writer.provisional:
            # they would sit in this process's work folder, where no reader looks (docs/storage.md)
            log.info("the warehouse is remote (%s): buffered rows are not shown to readers before "
                     "their commit", self.sink.location)
        if self.settings.writer.provisional and not remote:
            self.provisional = ProvisionalFiles(self.sink.root, self.settings.warehouse.compression)
        if self.settings.ordering.spill:
            sweep_spill_folders(self.sink.root)
        decoder = ThreadPoolExecutor(1, thread_name_prefix="amlwh-decode")
        committer = ThreadPoolExecutor(1, thread_name_prefix="amlwh-commit")
        self.cycle = FlushCycle(self.settings.writer, self.sink, self.claims, self.provisional,
                                committer, self.state.fail, self.metrics)
        try:
            await self._receive(store, client, decoder)
        finally:
            decoder.shutdown(wait=True)
            committer.shutdown(wait=True)
            shutil.rmtree(self._spill_folder, ignore_errors=True)
            await close_credential(credential)
        if self.state.fatal is not None:
            raise self.state.fatal
        return 0

    async def _receive(self, store, client, decoder: ThreadPoolExecutor) -> None:
        eh, s = self.settings.eventhub, self.settings
        remote = self.sink.remote is not None
        async with store, client:
            partition_count = 0
            if self.stop_when_idle_s is not None:
                partition_count = len(await client.get_partition_ids())
            timer = FlushTimer(s.writer, self.sink, self.claims, self.state, self.cycle,
                               stop_when_idle_s=self.stop_when_idle_s, partition_count=partition_count)
            intake = BatchIntake(s.writer, self.sink, self.claims, self.state, self.metrics, decoder,
                                 self.cycle, timer.wake)
            ownership = PartitionOwnership(s, self.hub, self.rules, self.claims, self.state, self.metrics,
                                           self.cycle, self._spill_folder if s.ordering.spill else None)
            receiving = asyncio.create_task(client.receive_batch(
                intake.on_event_batch, max_batch_size=eh.max_batch_size,
                max_wait_time=eh.max_wait_time_s, prefetch=eh.prefetch,
                starting_position=starting_position(eh.starting_position),
                owner_level=0 if eh.owner_level else None, track_last_enqueued_event_properties=True,
                on_partition_initialize=ownership.on_partition_initialize,
                on_partition_close=ownership.on_partition_close, on_error=ownership.on_error))
            self.health.receiving()
            ticker = asyncio.create_task(timer.run())
            monitor = PartitionMonitor(
                client, self.claims, store, s.metrics, s.watchdog, self.metrics,
                hub=self.hub, consumer_group=eh.consumer_group, busy=intake.busy,
                before_recovery=self._flush_before_recovery, on_unrecoverable=self.health.unrecoverable)
            self.background.append(asyncio.create_task(monitor.run_forever()))
            compaction = None
            if s.compaction.auto:
                compaction = BackgroundCompaction(
                    s.warehouse.path, s.warehouse.compression, s.compaction, lambda: self.cycle.commits,
                    self._compaction_round, remote_env(s) if remote else None)
                self.background.append(asyncio.create_task(compaction.run_forever()))
            log.info("receiving from %s (consumer group %s)", self.hub, eh.consumer_group)
            stop = asyncio.create_task(self.state.stop_requested.wait())
            await asyncio.wait({receiving, stop}, return_when=asyncio.FIRST_COMPLETED)
            if compaction is not None:
                compaction.stop()  # killed is safe: the next run finishes its work
            await self._shutdown(ownership.closed_counters)
            await client.close()
            for task in (receiving, ticker, stop, *self.background):
                task.cancel()
            await asyncio.gather(receiving, ticker, stop, *self.background, return_exceptions=True)
        if self.state.fatal is None and receiving.done() and not receiving.cancelled() and receiving.exception():
            raise receiving.exception()

    def _compaction_round(self, seconds: float, ok: bool) -> None:
        if ok:
            self.metrics.compacted(seconds)
        else:
            self.metrics.error("compaction_failed")

    async def _flush_before_recovery(self) -> bool:
        if self.state.halted:
            return False
        await self.cycle.flush_and_checkpoint()
        return not self.state.halted

    async def _shutdown(self, closed_counters: list[PartitionCounters]) -> None:
        """Stop taking events, release every buffer, flush, checkpoint."""
        self.state.stopping = True
        if self.state.fatal is not None:
            return  # the warehouse failed: nothing more may be acknowledged
        while any(c.pipeline.in_flight for c in self.claims.values()) and self.state.fatal is None:
            await asyncio.sleep(0.01)  # let batches in the decode thread reach the sink
        for claim in list(self.claims.values()):
            self.sink.write(claim.pipeline.drain())
            if self.sink.pending_rows >= self.cycle.burst_rows:
                await self.cycle.flush_and_checkpoint(final=True)  # bounded, like an idle release
        await self.cycle.flush_and_checkpoint(final=True)
        if self.state.fatal is None and self.provisional is not None:
            self.provisional.close()  # everything they showed is committed now
        behind = sorted(((pid, c.pipeline.ready) for pid, c in self.claims.items() if c.pipeline.ready is not None),
                        key=lambda item: item[0])
        for pid, mark in behind:
            log.warning("final checkpoint of partition %s at offset %s sequence %s failed: its last durable "
                        "events will be read again (and skipped as duplicates) after a restart",
                        pid, mark.offset, mark.sequence_number,
                        extra={"partition": pid, "offset": mark.offset, "sequence_number": mark.sequence_number})
        counters = [c.pipeline.counters for c in self.claims.values()] + closed_counters
        log.info(
            "stopped: flushed and checkpointed %d partition(s); received %d message(s), "
            "%d event(s) (%d late), %d dead letter(s), %d ignored",
            len(self.claims) - len(behind), sum(c.messages for c in counters), sum(c.events for c in counters),
            sum(c.late for c in counters), sum(c.dead_letters for c in counters),
            sum(c.ignored for c in counters))


def remote_env(settings: Settings) -> dict[str, str]:
    """A remote warehouse's settings as a child `amlwh compact` reads them from its environment
    (it runs with no config file): the credentials, the cache and work folders, the identity."""
    w = settings.warehouse
    env = {"AMLWH_WAREHOUSE__UPLOAD_PATIENCE_S": str(w.upload_patience_s)}
    if w.connection_string is not None:
        env["AMLWH_WAREHOUSE__CONNECTION_STRING"] = w.connection_string.get_secret_value()
    for name, value in (("ACCOUNT_URL", w.account_url), ("CONNECTION_VERIFY", w.connection_verify),
                        ("CACHE_DIR", w.cache_dir), ("WORK_DIR", w.work_dir)):
        if value is not None:
            env[f"AMLWH_WAREHOUSE__{name}"] = str(value)
    if settings.identity.client_id:
        env["AMLWH_IDENTITY__CLIENT_ID"] = settings.identity.client_id
    return env
