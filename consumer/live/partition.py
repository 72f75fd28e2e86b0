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
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import NamedTuple

from consumer.live.spill import BodySpill, SpillRef
from transforms.decode import DecodeRules, decode_body
from transforms.models import RunData
from transforms.ordering import Released, ReorderBuffer
from transforms.records import AmlEvent, DecodeResult, Origin
from transforms.rows import TABLE_COLUMNS, EventRows, TableRows, event_rows
from transforms.status import STATUS_RANK, run_event_status


_EVENT_TYPE = TABLE_COLUMNS["raw_events"].index("event_type")  # in EventRows.raw


@dataclass(frozen=True, slots=True)
class Mark:
    """What a checkpoint records of a message (all `update_checkpoint` reads), and when the
    hub enqueued it (for the lag metrics)."""

    offset: str
    sequence_number: int
    enqueued_us: int | None = None


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
    # the same by event type (events) or reason (dead letters, ignored), for the metrics
    received_by_type: Counter = field(default_factory=Counter)  # decoded into the reorder buffer
    released_by_type: Counter = field(default_factory=Counter)  # released to the writer
    late_by_type: Counter = field(default_factory=Counter)
    dead_letters_by_reason: Counter = field(default_factory=Counter)
    ignored_by_reason: Counter = field(default_factory=Counter)

    def snapshot(self) -> PartitionCounters:
        """A copy another thread may read while the decode thread counts on (dict() of a
        Counter is one C call, so it never sees one half-updated)."""
        return PartitionCounters(
            self.messages, self.events, self.late, self.dead_letters, self.ignored,
            Counter(dict(self.received_by_type)), Counter(dict(self.released_by_type)),
            Counter(dict(self.late_by_type)), Counter(dict(self.dead_letters_by_reason)),
            Counter(dict(self.ignored_by_reason)))


def _rank(event: AmlEvent) -> int:
    if isinstance(event.data, RunData):
        return STATUS_RANK[run_event_status(event.data.run_status)]
    return 0


class Compact(NamedTuple):
    """A buffered event kept as the message it came from, re-decoded at release.

    The normalized rows of an event take ~2.5x the bytes of its body (JSON text of
    tags and properties, per-row strings and tuples), and a live partition holds
    every event for `max_lateness_s`. Decoding is pure, so decoding the same body
    with the same origin, rules and ingest stamp again gives the same rows; for an
    element of a JSON array body, the event at the same `index`.
    """

    body: bytes | SpillRef  # a SpillRef when the pipeline spills bodies to disk
    index: int | None
    origin: Origin
    ingested_us: int


# Below this many buffered events a partition keeps rows as they are: a backlog
# (events released within a batch or two) never pays for decoding twice.
COMPACT_ABOVE = 64


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
    compact_above: int = COMPACT_ABOVE
    spill: BodySpill | None = None  # where compacted bodies go; None: they stay in memory
    # Provisional files (live/provisional.py): buffered events not yet shown, and for
    # shown ones the file version that shows them, keyed by id() of the buffered item
    # (alive in the buffer until released, so ids cannot be reused meanwhile).
    _fresh: dict[int, EventRows] = field(default_factory=dict, repr=False)
    _shown_in: dict[int, int] = field(default_factory=dict, repr=False)
    _done: Counter = field(default_factory=Counter, repr=False)  # version -> events now committed-bound

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
        decoded = []
        for msg in messages:
            origin = Origin("eventhub", self.hub, self.partition_id, msg.offset, msg.sequence_number,
                            msg.enqueued_us, None, None)
            result = decode_body(msg.body, origin, self.rules)
            self.counters.messages += 1
            if result.dead_letters or result.ignored:
                bad.dead_letters += result.dead_letters
                bad.ignored += result.ignored
                self.counters.dead_letters_by_reason.update(d.reason for d in result.dead_letters)
                self.counters.ignored_by_reason.update(i.reason for i in result.ignored)
                rows.add(DecodeResult(dead_letters=result.dead_letters, ignored=result.ignored), ingested_us)
            decoded.append((msg, origin, result.events))
        # What the release at the end of this batch leaves held: only those are worth
        # compacting (a backlog releases almost every event within its own batch).
        ordering = [self._ordering_us(e, msg) for msg, _, events in decoded for e in events]
        watermarks = [t - self.max_lateness_us - 1 for t in ordering]
        if self.buffer.watermark is not None:
            watermarks.append(self.buffer.watermark)
        stays_above = max(watermarks, default=0)  # the watermark once this batch is pushed
        times = iter(ordering)
        for msg, origin, events in decoded:
            for event in events:
                self.counters.received_by_type[event.envelope.event_type] += 1
                ordering_us = next(times)
                prepared = item = event_rows(event, ingested_us)
                if ordering_us > stays_above and len(self.buffer) >= self.compact_above:
                    item = Compact(msg.body if self.spill is None else self.spill.put(msg.body),
                                   event.index, origin, ingested_us)
                self._fresh[id(item)] = prepared
                self.buffer.push(item, subject=event.envelope.subject, event_time_us=ordering_us,
                                 rank=_rank(event), sequence=msg.sequence_number, now_us=now_us)
            self.unconfirmed.append(Mark(msg.offset, msg.sequence_number, msg.enqueued_us))
        self.counters.dead_letters += len(bad.dead_letters)
        self.counters.ignored += len(bad.ignored)
        self._add_released(rows, self.buffer.release(now_us))
        return rows, bad

    def _ordering_us(self, event: AmlEvent, msg: Message) -> int:
        if msg.enqueued_us is None:
            return event.envelope.event_time_us
        # a producer clock far ahead must not stall the partition
        return min(event.envelope.event_time_us, msg.enqueued_us + self.max_future_skew_us)

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
        for out in released:
            self.counters.events += 1
            self.counters.late += out.late
            item = out.item
            key = id(item)
            if self._fresh.pop(key, None) is None:  # it was shown in a provisional file
                version = self._shown_in.pop(key, None)
                if version is not None:
                    self._done[version] += 1
            prepared = item if isinstance(item, EventRows) else self._expand(item)
            event_type = prepared.raw[_EVENT_TYPE]
            self.counters.released_by_type[event_type] += 1
            if out.late:
                self.counters.late_by_type[event_type] += 1
            rows.add_event_rows(prepared, out.late)

    def _expand(self, item: Compact) -> EventRows:
        body = item.body if self.spill is None else self.spill.take(item.body)
        events = [e for e in decode_body(body, item.origin, self.rules).events if e.index == item.index]
        if len(events) != 1:  # decoding is pure: only a bug gets here
            raise RuntimeError(f"partition {self.partition_id} sequence {item.origin.sequence_number}: "
                               f"re-decoding a buffered body gave {len(events)} events at index {item.index}")
        return event_rows(events[0], item.ingested_us)

    def take_fresh(self, version: int) -> list[EventRows]:
        """Rows of the events buffered since the last call that are still buffered, now
        shown in provisional file `version`."""
        with self.guard:
            fresh, self._fresh = self._fresh, {}
            for key in fresh:
                self._shown_in[key] = version
            return list(fresh.values())

    def take_done(self) -> Counter:
        """Per provisional version, how many of its events left the buffer since the last
        call (released into the sink, or dropped with the partition)."""
        with self.guard:
            done, self._done = self._done, Counter()
            return done

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
            self._fresh.clear()
            if self.spill is not None:
                self.spill.clear()
            self._done.update(self._shown_in.values())  # the next owner shows them again
            self._shown_in.clear()
        return dropped
