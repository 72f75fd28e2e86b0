"""The SDK's ownership callbacks: partitions this worker is given and loses, and hub errors.

A claimed partition gets a pipeline of its own (live/partition.py), and a fresh spill
folder, so a partition claimed again starts clean. A partition closed while the worker
runs (another worker took it, its link failed) is dropped, not checkpointed: its new owner
re-reads from the last checkpoint and the views ignore the duplicates. On a graceful stop
the worker drains its claims itself (live/worker.py), so a close then drops nothing.

The number of owned partitions also bounds two things here: each claim's share of
[ordering] max_buffered_events (a bound for the whole process), and a warning when the
worker owns more partitions than its cores can keep up with.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from consumer.clock import mono_us, wall_us
from consumer.config import Settings
from consumer.eventhub.checkpoints import RetryState
from consumer.live.flush_cycle import Claim, FlushCycle
from consumer.live.metrics import WorkerMetrics
from consumer.live.partition import PartitionCounters, PartitionPipeline
from consumer.live.run_state import RunState
from consumer.live.spill import BodySpill
from consumer.live.watchdog import PartitionWatch
from transforms.decode import DecodeRules

log = logging.getLogger("amlwh.worker")
# More owned partitions than this per core and the event loop, decode and writer threads
# fall behind at a rate a single partition could sustain.
PARTITIONS_PER_CORE = 3


class PartitionOwnership:
    """on_partition_initialize, on_partition_close and on_error for the SDK.

    Collaborators, passed in: `settings` ([ordering], the consumer group), `hub` (its name,
    for the pipelines), `rules` (the decoder's), `claims` (the worker's owned partitions:
    added to and removed from here only), `state`, `metrics` (ownership changes, hub
    errors), `cycle` (a closed partition's provisional versions settle at its next flush)
    and `spill_folder` (this worker's folder for spilled bodies; None when [ordering] spill
    is off). `closed_counters` keeps the counters of partitions closed before the stop, for
    the worker's last log line."""

    def __init__(self, settings: Settings, hub: str, rules: DecodeRules, claims: dict[str, Claim],
                 state: RunState, metrics: WorkerMetrics, cycle: FlushCycle, spill_folder: Path | None) -> None:
        self.settings = settings
        self.hub = hub
        self.rules = rules
        self.claims = claims
        self.state = state
        self.metrics = metrics
        self.cycle = cycle
        self.spill_folder = spill_folder
        self.closed_counters: list[PartitionCounters] = []
        self._claims_made = 0
        self._over_core_budget = False

    async def on_partition_initialize(self, context) -> None:
        pid = context.partition_id
        o = self.settings.ordering
        spill = None
        if self.spill_folder is not None:
            self._claims_made += 1  # a fresh folder per claim: a reclaimed partition starts clean
            spill = BodySpill(self.spill_folder / f"p{pid}-{self._claims_made}")
        pipeline = PartitionPipeline(
            self.hub, pid, self.rules, int(o.max_lateness_s * 1e6), o.max_buffered_events,
            int(o.max_future_skew_s * 1e6), spill=spill)
        self.claims[pid] = Claim(pipeline, context, RetryState(), PartitionWatch(mono_us(), wall_us()))
        self.state.last_activity_us = mono_us()
        self._share_buffer_budget()
        self.metrics.ownership_changed("claimed")
        log.info("partition %s claimed", pid, extra={"partition": pid})
        self._check_core_budget()

    async def on_partition_close(self, context, reason) -> None:
        pid = context.partition_id
        claim = self.claims.pop(pid, None)
        if claim is None:
            return
        pipeline = claim.pipeline
        self.closed_counters.append(pipeline.counters)
        self._share_buffer_budget()
        self._check_core_budget()
        if self.state.stopping:
            return
        self.metrics.ownership_changed("lost")
        dropped = pipeline.reset()  # not checkpointed: the new owner re-reads them
        self.cycle.partition_closed(pipeline)
        if pipeline.spill is not None:
            pipeline.spill.close()
        checkpointed = pipeline.checkpointed
        log.warning("partition %s closed (%s): dropped %d buffered event(s) after offset %s",
                    pid, getattr(reason, "name", reason), dropped, checkpointed.offset if checkpointed else "-",
                    extra={"partition": pid, "offset": checkpointed.offset if checkpointed else None,
                           "sequence_number": checkpointed.sequence_number if checkpointed else None})

    async def on_error(self, context, error) -> None:
        pid = getattr(context, "partition_id", None)
        self.metrics.error(f"sdk:{type(error).__name__}")
        log.warning("partition %s: %s: %s (the SDK retries)", pid or "-", type(error).__name__, error,
                    extra={"partition": pid or None})

    def _share_buffer_budget(self) -> None:
        """[ordering] max_buffered_events bounds the whole process, so memory does not grow
        with the number of partitions owned: each gets an equal share."""
        if self.claims:
            share = max(1, self.settings.ordering.max_buffered_events // len(self.claims))
            for claim in self.claims.values():
                claim.pipeline.buffer.max_buffered = share

    def _check_core_budget(self) -> None:
        """Warn once each time the owned partitions go over the per-core budget."""
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        over = len(self.claims) > PARTITIONS_PER_CORE * cores
        if over and not self._over_core_budget:
            log.warning("this worker owns %d partitions on %d CPU core(s), more than %d per core: it may "
                        "fall behind; run more workers in consumer group %s, or give this one more cores",
                        len(self.claims), cores, PARTITIONS_PER_CORE, self.settings.eventhub.consumer_group)
        self._over_core_budget = over
