"""Per-partition pipeline of the live worker: decode -> rows -> reorder buffer -> batch,
and the bookkeeping that says how far the partition may be checkpointed.

No network and no clock here: the worker passes message coordinates and `now`.
Checkpoint rule: after a flush made every released row durable, the partition
may be checkpointed at the last received message whose sequence number is
below the oldest one still in the reorder buffer — never past a buffered event.

Threads: the worker runs `accept` in a decode thread so the event loop keeps
receiving. `guard` serializes every method that touches the buffer, and the
worker's `in_flight` count (kept on the loop) covers the gap between a batch
being handed to the decode thread and its released rows reaching the sink:
while a pipeline has batches in flight, no flush may take its checkpoint frontier.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field

from transforms.decode import DecodeRules, decode_body
from transforms.models import RunData
from transforms.ordering import Released, ReorderBuffer
from transforms.records import AmlEvent, DecodeResult, Origin
from transforms.rows import TableRows, event_rows
from transforms.status import STATUS_RANK, run_event_status


@dataclass(frozen=True, slots=True)
class Mark:
    """What a checkpoint records of a message (all `update_checkpoint` reads)."""

    offset: str
    sequence_number: int


@dataclass(frozen=True, slots=True)
class Message:
    body: bytes
    offset: str
    sequence_number: int
    enqueued_us: int | None


@dataclass
class PartitionCounters:
    messages: int = 0
    events: int = 0
    late: int = 0
    dead_letters: int = 0
    ignored: int = 0


def _rank(event: AmlEvent) -> int:
    if isinstance(event.data, RunData):
        return STATUS_RANK[run_event_status(event.data.run_status)]
    return 0


@dataclass
class PartitionPipeline:
    hub: str
    partition_id: str
    rules: DecodeRules
    max_lateness_us: int
    max_buffered: int
    max_future_skew_us: int
    buffer: ReorderBuffer = field(init=False)
    unconfirmed: deque[Mark] = field(default_factory=deque)  # received, not yet checkpointable
    ready: Mark | None = None  # durable and not yet checkpointed
    checkpointed: Mark | None = None
    counters: PartitionCounters = field(default_factory=PartitionCounters)
    in_flight: int = 0  # batches between the SDK callback and the sink (kept by the worker)
    guard: threading.Lock = field(default_factory=threading.Lock, repr=False)
    held: list = field(default_factory=list, repr=False)  # as of the last refresh_held()
    _held_version: tuple | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.buffer = ReorderBuffer(self.max_lateness_us, self.max_buffered)

    def accept(self, messages: list[Message], now_us: int, ingested_us: int) -> tuple[TableRows, DecodeResult]:
        """Decode messages; dead letters and ignored rows go straight to the rows,
        events into the reorder buffer; then whatever is due comes out."""
        with self.guard:
            return self._accept(messages, now_us, ingested_us)

    def _accept(self, messages: list[Message], now_us: int, ingested_us: int) -> tuple[TableRows, DecodeResult]:
        rows = TableRows()
        bad = DecodeResult()
        for msg in messages:
            origin = Origin("eventhub", self.hub, self.partition_id, msg.offset, msg.sequence_number,
                            msg.enqueued_us, None, None)
            result = decode_body(msg.body, origin, self.rules)
            self.counters.messages += 1
            if result.dead_letters or result.ignored:
                bad.dead_letters += result.dead_letters
                bad.ignored += result.ignored
                rows.add(DecodeResult(dead_letters=result.dead_letters, ignored=result.ignored), ingested_us)
            for event in result.events:
                ordering_us = event.envelope.event_time_us
                if msg.enqueued_us is not None:  # a producer clock far ahead must not stall the partition
                    ordering_us = min(ordering_us, msg.enqueued_us + self.max_future_skew_us)
                # the buffer holds the normalized rows, not the parsed event: a third of the memory
                self.buffer.push(event_rows(event, ingested_us), subject=event.envelope.subject,
                                 event_time_us=ordering_us, rank=_rank(event),
                                 sequence=msg.sequence_number, now_us=now_us)
            self.unconfirmed.append(Mark(msg.offset, msg.sequence_number))
        self.counters.dead_letters += len(bad.dead_letters)
        self.counters.ignored += len(bad.ignored)
        self._add_released(rows, self.buffer.release(now_us))
        return rows, bad

    def tick(self, now_us: int) -> TableRows:
        """Release what is due by time alone (idle partitions)."""
        rows = TableRows()
        with self.guard:
            self._add_released(rows, self.buffer.release(now_us))
        return rows

    def drain(self) -> TableRows:
        rows = TableRows()
        with self.guard:
            self._add_released(rows, self.buffer.drain())
        return rows

    def _add_released(self, rows: TableRows, released: list[Released]) -> None:
        for item in released:
            self.counters.events += 1
            self.counters.late += item.late
            rows.add_event_rows(item.item, item.late)

    def refresh_held(self) -> bool:
        """Update `held` to the rows of every event still buffered; False if unchanged
        since the last call (for the provisional files: consumer/provisional.py)."""
        with self.guard:
            version = self.buffer.version
            if version == self._held_version:
                return False
            self._held_version = version
            self.held = self.buffer.held()
            return True

    def take_frontier(self) -> Mark | None:
        """When the sink's batch is taken for a flush: the last received message whose
        events have all left the buffer (so are in that batch or an earlier one), or None
        when that has not moved. Pass it to `confirm` once the flush is durable."""
        frontier_mark = None
        with self.guard:
            frontier = self.buffer.oldest_sequence
            while self.unconfirmed and (frontier is None or self.unconfirmed[0].sequence_number < frontier):
                frontier_mark = self.unconfirmed.popleft()
        return frontier_mark

    def confirm(self, mark: Mark | None) -> Mark | None:
        """The flush that `mark` was taken with is durable: it may be checkpointed."""
        if mark is not None:
            self.ready = mark
        return self.ready

    def confirm_durable(self) -> Mark | None:
        """Right after a synchronous flush: advance `ready` to the last message wholly durable."""
        return self.confirm(self.take_frontier())

    def checkpoint_done(self, mark: Mark) -> None:
        self.checkpointed = mark
        if self.ready == mark:
            self.ready = None

    def reset(self) -> int:
        """Ownership lost: forget everything unflushed; the next owner re-reads it."""
        with self.guard:  # waits for a decode still running in the worker's thread
            dropped = self.buffer.clear()
            self.unconfirmed.clear()
            self.ready = None
        return dropped
