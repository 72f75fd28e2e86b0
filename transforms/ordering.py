"""Per-partition reorder buffer: per-subject event-time order with bounded lateness.

Pure: no I/O, no clock. Every time-dependent call takes `now_us` from the
caller (use a monotonic clock: it only measures idleness, never event time).

Order. Items leave in (event_time_us, rank, sequence, push order) order — a
heap. Per subject that is event-time order with ties broken by status rank
(later lifecycle last) and then by arrival. Subject None is just another group.
`sequence` is the Event Hubs sequence number; events decoded from one message
(a JSON array body) share it, so it must be non-decreasing in push order, not
unique; push order breaks the remaining ties. `push` raises ValueError when it
goes backwards (the frontier below relies on it): re-reading a partition from
a checkpoint needs `clear()` first, which resets everything but the stats.

Watermark. `watermark = max event time pushed - max_lateness - 1` (the Flink
convention): every item with `event_time <= watermark` is due. The `- 1` makes
"disorder bounded by the lateness" exact: an item pushed while the max event
time seen is at most its own time + max_lateness is never late, because no
item of its time can have been released yet.

Release. `release(now_us)` hands out, as one sorted batch:
  1. due items (event_time <= watermark);
  2. while more than `max_buffered` remain, the oldest ones (cap; counted in
     `stats.forced_by_cap`);
  3. everything, when no item was pushed for >= max_lateness
     (`now_us - last push now_us`; counted in `stats.released_idle`);
  4. every late item pushed since the last call, whatever its time.
Cap behaviour: `push` never releases — it only queues. The cap is enforced by
the next `release`, which therefore always leaves `len(buffer) <=
max_buffered`. Between two `release` calls the buffer can exceed the cap by
the number of pushes in between, so call `release` after each received batch.
Cap and idle releases pick the oldest items by event time, so they keep the
batch and per-subject order; they can only make *later* arrivals late.

Late rule (decided once, at push; the item is kept apart and leaves at the
next `release`, flagged `late=True`, counted in `stats.late` when released):
    late  <=>  event_time <= watermark at push
           or  (event_time, rank) < mark[subject]
where mark[subject] is the highest (event_time, rank) released so far for the
subject. The first clause says "arrived after the watermark had passed it"
(it can be out of order with items already written, and we cannot know, since
marks are not kept forever); the second says "out of order with what was
already released for its subject", which only happens after cap or idle
releases, since watermark releases never pass an unflagged item's time.
Why this rule: it makes pruning marks exactly invisible. A mark whose time
is <= the current watermark can be dropped, because any item below it has
event_time <= mark time <= watermark <= the watermark at any later push, so
the first clause already flags it. Marks are therefore pruned with margin 0
(swept when their number doubles, amortized O(1)), and what stays is bounded
by the subjects released above the watermark — no margin to tune, and the
same inputs give the same flags whatever the sweep schedule. A consequence
worth knowing: an item that arrives more than max_lateness behind the
partition's newest event time is late even if its subject saw nothing else.

Caveat: the watermark follows the *largest* event time pushed, so one event
dated far ahead (a skewed producer clock) makes every later arrival late and
is itself held — pinning `oldest_sequence` — until the partition idles (the
cap never picks it: it is the newest). Callers should push a clamped ordering
time, e.g. min(event time, enqueued time + allowed skew).

Guarantees (see tests/transforms/test_ordering.py): nothing lost or duplicated;
each batch sorted; per subject, unflagged items leave in non-decreasing
(event_time, rank, sequence) order; with disorder bounded by the lateness and
no cap or idle release, nothing is flagged.

Checkpoint frontier. `oldest_sequence` is the smallest sequence still held
(None when empty). Every event of the partition with a smaller sequence has
left the buffer; the worker may checkpoint at most the last event *before*
that sequence (and only once the writer made those released events durable).
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Released(Generic[T]):
    """One item out of the buffer, with the attributes it was ordered by."""

    item: T
    late: bool
    subject: str | None
    event_time_us: int
    rank: int
    sequence: int


@dataclass(slots=True)
class ReorderStats:
    """Cumulative counters (survive `clear`)."""

    pushed: int = 0
    released: int = 0  # by release() and drain(), late ones included
    late: int = 0  # released with late=True
    forced_by_cap: int = 0  # released before due because of max_buffered
    released_idle: int = 0  # released before due because the partition was idle
    dropped: int = 0  # thrown away by clear()


_NEVER = float("-inf")  # below every int: "no event time seen yet"

# Heap entry: (event_time_us, rank, sequence, push_no, late, subject, item).
# push_no is unique, so comparisons never reach `late`, `subject` or `item`.


class ReorderBuffer(Generic[T]):
    """One Event Hubs partition's reorder buffer (see the module docstring)."""

    # Housekeeping thresholds; class attributes so tests can shrink them.
    _MARK_SWEEP_FLOOR = 4096
    _FRONTIER_SLACK = 1024

    __slots__ = (
        "max_lateness_us", "max_buffered", "stats", "_heap", "_late", "_marks", "_sweep_at",
        "_max_time", "_watermark", "_last_push_us", "_last_sequence", "_push_no",
        "_arrivals", "_gone",
    )

    def __init__(self, max_lateness_us: int, max_buffered: int) -> None:
        if max_lateness_us < 0:
            raise ValueError(f"max_lateness_us must be >= 0, got {max_lateness_us}")
        if max_buffered < 0:
            raise ValueError(f"max_buffered must be >= 0, got {max_buffered}")
        self.max_lateness_us = max_lateness_us
        self.max_buffered = max_buffered
        self.stats = ReorderStats()
        self._reset()

    def _reset(self) -> None:
        self._heap: list[tuple] = []  # on-time items
        self._late: list[tuple] = []  # late items, out at the next release
        self._marks: dict[str | None, tuple[int, int]] = {}  # subject -> (time, rank)
        self._sweep_at = self._MARK_SWEEP_FLOOR
        self._max_time: float | int = _NEVER
        self._watermark: float | int = _NEVER
        self._last_push_us: int | None = None
        self._last_sequence: float | int = _NEVER
        self._push_no = 0
        # Sequences in push order (hence sorted); released ones are counted in
        # _gone and popped lazily from the left. A multiset, because events of
        # one message share a sequence.
        self._arrivals: deque[int] = deque()
        self._gone: dict[int, int] = {}

    # -- input -------------------------------------------------------------------

    def push(
        self,
        item: T,
        *,
        subject: str | None,
        event_time_us: int,
        rank: int,
        sequence: int,
        now_us: int,
    ) -> None:
        """Queue one item. Never releases anything (see "Cap behaviour")."""
        if sequence < self._last_sequence:
            raise ValueError(
                f"sequence {sequence} after {self._last_sequence}: pushes must follow the "
                "partition's sequence order (clear() before re-reading from a checkpoint)"
            )
        self._last_sequence = sequence
        late = event_time_us <= self._watermark
        if not late:
            mark = self._marks.get(subject)
            if mark is not None:
                mark_time = mark[0]
                late = event_time_us < mark_time or (
                    event_time_us == mark_time and rank < mark[1]
                )
        self._push_no += 1
        entry = (event_time_us, rank, sequence, self._push_no, late, subject, item)
        if late:
            self._late.append(entry)
        else:
            heapq.heappush(self._heap, entry)
        self._arrivals.append(sequence)
        if event_time_us > self._max_time:
            self._max_time = event_time_us
            self._watermark = event_time_us - self.max_lateness_us - 1
        self._last_push_us = now_us
        self.stats.pushed += 1

    # -- output ------------------------------------------------------------------

    def release(self, now_us: int) -> list[Released[T]]:
        """Everything due at `now_us`, as one batch sorted by the buffer's order."""
        heap, pop = self._heap, heapq.heappop
        out: list[tuple] = []
        watermark = self._watermark
        while heap and heap[0][0] <= watermark:
            out.append(pop(heap))
        forced = len(heap) - self.max_buffered
        if forced > 0:
            for _ in range(forced):
                out.append(pop(heap))
            self.stats.forced_by_cap += forced
        last = self._last_push_us
        if heap and last is not None and now_us - last >= self.max_lateness_us:
            self.stats.released_idle += len(heap)
            while heap:
                out.append(pop(heap))
        return self._emit(out)

    def drain(self) -> list[Released[T]]:
        """Everything still held, in order (graceful shutdown)."""
        out = self._heap
        out.sort()
        self._heap = []
        return self._emit(out)

    def clear(self) -> int:
        """Drop everything (partition ownership lost) and start afresh; returns the count.

        Nothing is released: the next owner re-reads the partition from the
        last checkpoint. Watermark, marks and sequence order are reset too, so
        a re-read from a checkpoint is judged like a first read. Stats are kept.
        """
        dropped = len(self)
        self.stats.dropped += dropped
        self._reset()
        return dropped

    def _emit(self, out: list[tuple]) -> list[Released[T]]:
        """Merge late items into `out` (heap order), update marks and the frontier."""
        late = self._late
        if late:
            self.stats.late += len(late)
            out += late  # `out` is one sorted run; timsort merges the few late ones cheaply
            out.sort()
            self._late = []
        if not out:
            return []
        marks, gone = self._marks, self._gone
        result: list[Released[T]] = []
        append = result.append
        for time, rank, sequence, _, is_late, subject, item in out:
            mark = marks.get(subject)
            if mark is None or time > mark[0] or (time == mark[0] and rank > mark[1]):
                marks[subject] = (time, rank)
            gone[sequence] = gone.get(sequence, 0) + 1
            append(Released(item, is_late, subject, time, rank, sequence))
        self.stats.released += len(result)
        self._advance_frontier()
        if len(marks) > self._sweep_at:
            self._sweep_marks()
        return result

    # -- housekeeping ------------------------------------------------------------

    def _advance_frontier(self) -> None:
        arrivals, gone = self._arrivals, self._gone
        if not self._heap and not self._late:
            arrivals.clear()
            gone.clear()
            return
        while arrivals:
            first = arrivals[0]
            count = gone.get(first)
            if not count:
                break
            arrivals.popleft()
            if count == 1:
                del gone[first]
            else:
                gone[first] = count - 1
        # A long-held item pins the left end; compact so memory stays O(len(self)).
        if len(arrivals) > 2 * len(self) + self._FRONTIER_SLACK:
            kept: deque[int] = deque()
            for sequence in arrivals:
                count = gone.get(sequence)
                if count:
                    gone[sequence] = count - 1
                else:
                    kept.append(sequence)
            self._arrivals = kept
            gone.clear()

    def _sweep_marks(self) -> None:
        """Drop marks at or below the watermark: the late rule no longer needs them."""
        watermark = self._watermark
        self._marks = {s: m for s, m in self._marks.items() if m[0] > watermark}
        self._sweep_at = max(self._MARK_SWEEP_FLOOR, 2 * len(self._marks))

    # -- inspection --------------------------------------------------------------

    @property
    def oldest_sequence(self) -> int | None:
        """Smallest sequence still held (None when empty): the checkpoint frontier."""
        # _emit leaves the left end on a held item, so this is a plain read.
        return self._arrivals[0] if self._arrivals else None

    @property
    def watermark(self) -> int | None:
        """Max event time pushed - max_lateness - 1; None before the first push."""
        return None if self._watermark == _NEVER else self._watermark  # type: ignore[return-value]

    def __len__(self) -> int:
        return len(self._heap) + len(self._late)
