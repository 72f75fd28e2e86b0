"""The worker's flush cycle: rows durable first, then offsets (Quix's order).

A flush, on the event loop:
1. takes the sink's pending batch and, for each claimed partition with no batch in the
   decode thread, its frontier: the last message whose events have all left the reorder
   buffer, hence are in that batch. Both are taken together, so no frontier can pass an
   event that is still buffered or still being decoded;
2. commits the batch in the writer thread (storage/warehouse.py, storage/durable.py),
   then the provisional files, so an event is never missing from both;
3. only after the commit is durable, confirms each frontier and checkpoints its
   partition through the SDK's checkpoint store, backing off per partition on transient
   storage errors (eventhub/checkpoints.py). A partition closed meanwhile is skipped:
   its new owner re-reads from the last checkpoint, and the views ignore the duplicates.

A write error is handed to `on_failure` (the worker stops) before anything of the batch
is checkpointed. Flushes run one at a time.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from consumer.clock import mono_us, wall_s
from consumer.config import WriterSettings
from consumer.errors import WarehouseWriteError
from consumer.eventhub.checkpoints import CHECKPOINT_TIMEOUT_S, TRANSIENT_STORAGE_ERRORS, RetryState
from consumer.live.partition import Mark, PartitionPipeline
from consumer.live.provisional import ProvisionalFiles
from consumer.storage.warehouse import ParquetWarehouse, PendingBatch
from consumer.tuning import release_free_memory

if TYPE_CHECKING:
    from consumer.live.metrics import WorkerMetrics
    from consumer.live.watchdog import PartitionWatch

log = logging.getLogger("amlwh.worker")


@dataclass
class Claim:
    """One partition this worker owns: its pipeline, the SDK's PartitionContext (the
    handle `update_checkpoint` is called on), its checkpoint retry state and what the
    lag metrics and the stall watchdog know of it (live/watchdog.py)."""

    pipeline: PartitionPipeline
    context: Any
    retry: RetryState
    watch: PartitionWatch | None = None


class FlushCycle:
    """Flushes the sink and checkpoints the claimed partitions.

    Collaborators, passed in: `writer` (when a flush is due), `sink` (take_pending and
    commit), `claims` (the worker's owned partitions, read here and never added to or
    removed from), `provisional` (None when [writer] provisional is off), `committer` (the
    single writer thread), `on_failure(exc, what)` (stops the worker) and `metrics` (flush
    and checkpoint latencies, their failures)."""

    def __init__(self, writer: WriterSettings, sink: ParquetWarehouse, claims: dict[str, Claim],
                 provisional: ProvisionalFiles | None, committer: Executor,
                 on_failure: Callable[[BaseException, str], None], metrics: WorkerMetrics | None = None) -> None:
        self.writer = writer
        self.sink = sink
        self.claims = claims
        self.provisional = provisional
        self.committer = committer
        self.on_failure = on_failure
        self.metrics = metrics
        self.last_flush_us = mono_us()
        self._lock = asyncio.Lock()
        self._shown_version = 0
        self.commits = 0  # commits that stored rows (automatic compaction runs after new ones)
        # per provisional version, events that left the buffers of partitions closed since
        # the last flush (released into the sink, or dropped with the partition)
        self._orphan_done: Counter = Counter()
        self._deletion_at: float | None = None  # wall clock: a retired version's grace ends

    @property
    def burst_rows(self) -> int:
        """Flush step when many partitions release at once (idle, shutdown): a quarter of
        max_rows, because those rows were compact bodies a moment ago (live/partition.py)."""
        return max(1, self.writer.max_rows // 4)

    def due(self, last_activity_us: int) -> bool:
        """Whether a flush is due, given when the last batch arrived (monotonic us)."""
        w = self.writer
        pending = self.sink.pending_rows
        if pending >= w.max_rows or self._provisional_housekeeping_due():
            return True
        now = mono_us()
        if pending and now - last_activity_us >= w.idle_flush_s * 1e6:
            return True  # caught up or paused: no reason to hold finished rows back
        waiting = pending or any(  # ready: a failed checkpoint waits for a retry
            c.pipeline.unconfirmed or c.pipeline.ready is not None for c in self.claims.values())
        return bool(waiting) and now - self.last_flush_us >= w.max_seconds * 1e6

    def _provisional_housekeeping_due(self) -> bool:
        """Provisional versions wait for a flush to settle: those of a closed partition, and
        retired ones past their grace. An idle worker (nothing buffered, everything
        checkpointed) flushes for them alone, or their files would stay until traffic resumes."""
        return bool(self._orphan_done) or (self._deletion_at is not None and wall_s() >= self._deletion_at)

    async def maybe_flush(self, last_activity_us: int) -> None:
        if self.due(last_activity_us) and not self._lock.locked():
            await self.flush_and_checkpoint()

    def partition_closed(self, pipeline: PartitionPipeline) -> None:
        """A closed partition's provisional versions settle with the next flush."""
        self._orphan_done.update(pipeline.take_done())

    async def flush_and_checkpoint(self, *, final: bool = False) -> None:
        async with self._lock:
            # Taken together on the loop: the batch and, per partition not mid-decode, the
            # last message whose events have all left the buffer (hence are in the batch).
            pending = self.sink.take_pending()
            settled = [(pid, c) for pid, c in self.claims.items() if not c.pipeline.in_flight]
            frontiers = [(pid, c, c.pipeline.take_frontier()) for pid, c in settled]
            shown = None  # for the provisional files: new version, its events, versions settled
            if self.provisional is not None:
                self._shown_version += 1
                fresh = [c.pipeline.take_fresh(self._shown_version) for c in self.claims.values()]
                done, self._orphan_done = self._orphan_done, Counter()
                for _, c in settled:  # a busy one's releases may not be in this batch yet
                    done.update(c.pipeline.take_done())
                shown = (self._shown_version, fresh, done)
            started = mono_us()
            try:
                self._deletion_at = await asyncio.get_running_loop().run_in_executor(
                    self.committer, self._commit, pending, shown)
            except WarehouseWriteError as exc:
                if self.metrics is not None:
                    self.metrics.error("flush_failed")
                self.on_failure(exc, "flush failed")
                return
            self.last_flush_us = mono_us()
            if self.metrics is not None:
                self.metrics.flushed((self.last_flush_us - started) / 1e6)
            self.commits += bool(pending.tables)
            for pid, claim, frontier in frontiers:
                if self.claims.get(pid) is not claim:
                    continue  # closed while the batch was written: the new owner re-reads
                mark = claim.pipeline.confirm(frontier)
                if not await self._checkpoint(pid, claim, mark, final=final):
                    break  # the store is failing: the others wait for the next round

    def _commit(self, pending: PendingBatch, shown) -> float | None:
        """In the writer thread: the batch first, then the provisional files, so an
        event is never missing from both. Returns when a retired version may be deleted."""
        self.sink.commit(pending)
        release_free_memory()  # decode garbage the allocator's arenas would keep
        if shown is None:
            return None
        version, fresh, done = shown
        try:
            self.provisional.publish(version, fresh, wall_s())
            self.provisional.settle(done, wall_s())  # their events are in the batch just committed
        except OSError as exc:
            raise WarehouseWriteError(self.sink.explain(exc)) from exc
        return self.provisional.next_deletion_at()

    async def _checkpoint(self, pid: str, claim: Claim, mark: Mark | None, *, final: bool = False) -> bool:
        pipeline, retry = claim.pipeline, claim.retry
        if mark is None or mark == pipeline.checkpointed:
            return True
        if mono_us() < retry.next_attempt_us and not final:  # backing off after a storage error
            return True
        started = mono_us()
        try:
            await asyncio.wait_for(claim.context.update_checkpoint(mark), CHECKPOINT_TIMEOUT_S)
        except TRANSIENT_STORAGE_ERRORS as exc:  # keep the mark, retry later
            if self.metrics is not None:
                self.metrics.error("checkpoint_failed")
            delay = retry.failed(mono_us())  # from the failure: an attempt can take seconds
            log.warning("checkpoint of partition %s at offset %s sequence %s failed (%s: %s); "
                        "retrying in %.1fs", pid, mark.offset, mark.sequence_number,
                        type(exc).__name__, str(exc) or f"no answer in {CHECKPOINT_TIMEOUT_S:g}s", delay,
                        extra={"partition": pid, "offset": mark.offset, "sequence_number": mark.sequence_number})
            return False
        if self.metrics is not None:
            self.metrics.checkpointed((mono_us() - started) / 1e6)
        retry.failures = 0
        pipeline.checkpoint_done(mark)
        return True
