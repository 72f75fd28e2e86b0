"""The worker's flush cycle: rows durable first, then offsets (Quix's order).

A flush, on the event loop:
1. takes the sink's pending batch and, for each partition with no batch in the decode
   thread, its frontier: the last message whose events have all left the reorder buffer,
   hence are in that batch. Both are taken together, so no frontier can pass an event
   that is still buffered or still being decoded;
2. commits the batch in the writer thread (consumer/warehouse.py, consumer/durable.py),
   then the provisional files, so an event is never missing from both;
3. only after the commit is durable, confirms each frontier and checkpoints its
   partition through the SDK's checkpoint store, backing off per partition on transient
   storage errors (consumer/checkpoints.py). A partition closed meanwhile is skipped:
   its new owner re-reads from the last checkpoint, and the views ignore the duplicates.

A write error stops the worker (Worker._fail) before anything of the batch is
checkpointed. Flushes run one at a time, from the worker's own timer task.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter

from consumer.checkpoints import CHECKPOINT_TIMEOUT_S, TRANSIENT_STORAGE_ERRORS
from consumer.clock import mono_us
from consumer.memory import release_free_memory
from consumer.warehouse import WarehouseWriteError

log = logging.getLogger("amlwh.worker")


class FlushCycle:
    """The flush/commit/checkpoint half of consumer.worker.Worker, which mixes it in: it
    uses the worker's settings, sink, pipelines, contexts, retries, provisional files,
    lock, writer thread and _fail."""

    @property
    def _burst_rows(self) -> int:
        """Flush step when many partitions release at once (idle, shutdown): a quarter of
        max_rows, because those rows were compact bodies a moment ago (consumer/partition.py)."""
        return max(1, self.settings.writer.max_rows // 4)

    def _due(self) -> bool:
        w = self.settings.writer
        pending = self.sink.pending_rows
        if pending >= w.max_rows:
            return True
        now = mono_us()
        if pending and now - self.last_activity_us >= w.idle_flush_s * 1e6:
            return True  # caught up or paused: no reason to hold finished rows back
        waiting = pending or any(
            p.unconfirmed or p.ready is not None for p in self.pipelines.values())  # ready: a failed checkpoint
        return bool(waiting) and now - self.last_flush_us >= w.max_seconds * 1e6

    async def _maybe_flush(self) -> None:
        if self._due() and not self._lock.locked():
            await self.flush_and_checkpoint()

    async def flush_and_checkpoint(self, *, final: bool = False) -> None:
        async with self._lock:
            # Taken together on the loop: the batch and, per partition not mid-decode, the
            # last message whose events have all left the buffer (hence are in the batch).
            pending = self.sink.take_pending()
            settled = [(pid, p) for pid, p in self.pipelines.items() if not p.in_flight]
            frontiers = [(pid, p, p.take_frontier()) for pid, p in settled]
            shown = None  # for the provisional files: new version, its events, versions settled
            if self.provisional is not None:
                self._shown_version += 1
                fresh = [p.take_fresh(self._shown_version) for p in self.pipelines.values()]
                done, self._orphan_done = self._orphan_done, Counter()
                for _, p in settled:  # a busy one's releases may not be in this batch yet
                    done.update(p.take_done())
                shown = (self._shown_version, fresh, done)
            try:
                await asyncio.get_running_loop().run_in_executor(self._committer, self._commit, pending, shown)
            except WarehouseWriteError as exc:
                self._fail(exc, "flush failed")
                return
            self.last_flush_us = mono_us()
            for pid, pipeline, frontier in frontiers:
                if self.pipelines.get(pid) is not pipeline:
                    continue  # closed while the batch was written: the new owner re-reads
                mark = pipeline.confirm(frontier)
                if not await self._checkpoint(pid, mark, final=final):
                    break  # the store is failing: the others wait for the next round

    def _commit(self, pending, shown) -> None:
        """In the writer thread: the batch first, then the provisional files, so an
        event is never missing from both."""
        self.sink.commit(pending)
        release_free_memory()  # consumer/memory.py: decode garbage the arenas would keep
        if shown is None:
            return
        version, fresh, done = shown
        try:
            self.provisional.publish(version, fresh, time.time())
            self.provisional.settle(done, time.time())  # their events are in the batch just committed
        except OSError as exc:
            raise WarehouseWriteError(self.sink.explain(exc)) from exc

    async def _checkpoint(self, pid: str, mark, *, final: bool = False) -> bool:
        pipeline, context, retry = self.pipelines.get(pid), self.contexts.get(pid), self.retries.get(pid)
        if mark is None or pipeline is None or context is None or mark == pipeline.checkpointed:
            return True
        now = mono_us()
        if now < retry.next_attempt_us and not final:  # backing off after a storage error
            return True
        try:
            await asyncio.wait_for(context.update_checkpoint(mark), CHECKPOINT_TIMEOUT_S)
        except TRANSIENT_STORAGE_ERRORS as exc:  # keep the mark, retry later
            delay = retry.failed(mono_us())  # from the failure: an attempt can take seconds
            log.warning("checkpoint of partition %s at offset %s sequence %s failed (%s: %s); "
                        "retrying in %.1fs", pid, mark.offset, mark.sequence_number,
                        type(exc).__name__, str(exc) or f"no answer in {CHECKPOINT_TIMEOUT_S:g}s", delay)
            return False
        retry.failures = 0
        pipeline.checkpoint_done(mark)
        return True
