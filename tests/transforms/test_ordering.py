"""The per-partition reorder buffer (transforms.ordering).

Example tests pin the rules one at a time; property tests drive the buffer
with arbitrary pushes, time jumps and interleaved releases and check:
- nothing lost or duplicated, each batch sorted, unflagged items in order per subject;
- bounded disorder gives no late item and exactly the sorted input per subject;
- len <= max_buffered after each release, oldest_sequence = min held sequence;
- the real buffer (heap, mark pruning, frontier compaction) releases exactly
  what a naive reference model of the documented rules releases.
"""

from __future__ import annotations

from collections import Counter, defaultdict

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from transforms.ordering import Released, ReorderBuffer

S = 1_000_000  # one second in µs
HOUR = 3600 * S
PROPS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class EagerBuffer(ReorderBuffer):
    """Sweeps marks and compacts the frontier at every chance, to exercise both."""

    _MARK_SWEEP_FLOOR = 0
    _FRONTIER_SLACK = 0


def key(r: Released) -> tuple:
    return (r.event_time_us, r.rank, r.sequence)


def push(buf: ReorderBuffer, item, subject, t, rank=0, seq=None, now=0) -> None:
    buf.push(item, subject=subject, event_time_us=t, rank=rank,
             sequence=item if seq is None else seq, now_us=now)


# -- a naive model of the documented rules (no heap, no pruning, no compaction) --


class Model:
    def __init__(self, lateness: int, cap: int) -> None:
        self.lateness, self.cap = lateness, cap
        self.held: list[tuple] = []  # (t, rank, seq, n, late, subject, item)
        self.marks: dict = {}
        self.max_t: int | None = None
        self.last_push: int | None = None
        self.n = 0

    def watermark(self) -> float:
        return float("-inf") if self.max_t is None else self.max_t - self.lateness - 1

    def push(self, item, subject, t, rank, seq, now) -> None:
        late = t <= self.watermark() or (subject in self.marks and (t, rank) < self.marks[subject])
        self.n += 1
        self.held.append((t, rank, seq, self.n, late, subject, item))
        self.max_t = t if self.max_t is None else max(self.max_t, t)
        self.last_push = now

    def release(self, now: int | None) -> list[tuple]:
        wm = self.watermark()
        out = [e for e in self.held if e[4] or e[0] <= wm]
        rest = sorted(e for e in self.held if e not in out)
        if len(rest) > self.cap:
            out += rest[: len(rest) - self.cap]
            rest = rest[len(rest) - self.cap:]
        if now is None or (self.last_push is not None and now - self.last_push >= self.lateness):
            out += rest
        self.held = [e for e in self.held if e not in out]
        out.sort()
        for t, rank, _, _, _, subject, _ in out:
            self.marks[subject] = max(self.marks.get(subject, (t, rank)), (t, rank))
        return [(e[6], e[4]) for e in out]


# -- strategies ----------------------------------------------------------------

SUBJECTS = st.sampled_from([None, "runs/a", "runs/b", "runs/c"])
JUMP = st.one_of(
    st.integers(-6, 6).map(lambda k: k * S // 2),  # a coarse grid: equal times, exact bounds
    st.integers(-3, 3),  # off-by-one µs around them
    st.integers(-3 * S, 3 * S),  # anywhere around the lateness
    st.sampled_from([-5 * HOUR, -HOUR, HOUR, 2 * HOUR]),  # hours late / a leap ahead
)
NOW_STEP = st.one_of(st.integers(0, 4).map(lambda k: k * S // 2), st.integers(0, 3 * S))
OP = st.one_of(
    st.tuples(st.just("push"), SUBJECTS, JUMP, st.integers(0, 3),
              st.sampled_from([0, 1, 1, 3]), NOW_STEP),  # seq step 0 = same message
    st.tuples(st.just("release"), NOW_STEP),
)


def run_ops(buf: ReorderBuffer, ops, model: Model | None = None):
    """Apply ops; check per-step invariants; return (pushed, batches)."""
    t, seq, now = 10 * HOUR, 0, 0
    pushed: list[tuple] = []  # (item, subject, t, rank, seq)
    batches: list[list[Released]] = []
    for op in ops:
        if op[0] == "push":
            _, subject, jump, rank, seq_step, dnow = op
            t, seq, now = t + jump, seq + seq_step, now + dnow
            item = len(pushed)
            buf.push(item, subject=subject, event_time_us=t, rank=rank, sequence=seq, now_us=now)
            if model is not None:
                model.push(item, subject, t, rank, seq, now)
            pushed.append((item, subject, t, rank, seq))
        else:
            now += op[1]
            batch = buf.release(now)
            if model is not None:
                assert [(r.item, r.late) for r in batch] == model.release(now)
            assert len(buf) <= buf.max_buffered
            batches.append(batch)
        released = {r.item for b in batches for r in b}
        held = [p[4] for p in pushed if p[0] not in released]
        assert len(buf) == len(held)
        assert buf.oldest_sequence == (min(held) if held else None)
    final = buf.drain()
    if model is not None:
        assert [(r.item, r.late) for r in final] == model.release(None)
    batches.append(final)
    assert len(buf) == 0 and buf.oldest_sequence is None
    return pushed, batches


def sorted_by_order(batch: list[Released]) -> bool:
    keys = [key(r) for r in batch]
    return keys == sorted(keys)


# -- properties ------------------------------------------------------------------


@PROPS
@given(ops=st.lists(OP, max_size=60), lateness=st.sampled_from([0, 1, S, 2 * S]),
       cap=st.sampled_from([0, 1, 3, 10_000]))
def test_nothing_lost_nothing_duplicated_batches_sorted_subjects_in_order(ops, lateness, cap):
    buf: ReorderBuffer[int] = ReorderBuffer(lateness, cap)
    pushed, batches = run_ops(buf, ops)
    out = [r for b in batches for r in b]
    assert Counter(r.item for r in out) == Counter(p[0] for p in pushed)
    by_item = {p[0]: p for p in pushed}
    for r in out:  # the attributes travel with the item
        assert (r.item, r.subject, r.event_time_us, r.rank, r.sequence) == by_item[r.item]
    assert all(sorted_by_order(b) for b in batches)
    on_time = defaultdict(list)
    for r in out:
        if not r.late:
            on_time[r.subject].append(key(r))
    for keys in on_time.values():
        assert keys == sorted(keys)
    s = buf.stats
    assert s.pushed == s.released == len(pushed)
    assert s.late == sum(r.late for r in out)
    assert s.forced_by_cap + s.released_idle <= s.released


@PROPS
@given(ops=st.lists(OP, max_size=60), lateness=st.sampled_from([0, 1, S, 2 * S]),
       cap=st.sampled_from([0, 1, 3, 10_000]), eager=st.booleans())
def test_buffer_releases_exactly_what_the_naive_model_releases(ops, lateness, cap, eager):
    # Same batches, same order, same late flags: so mark pruning and frontier
    # compaction change nothing observable.
    buf = (EagerBuffer if eager else ReorderBuffer)(lateness, cap)
    run_ops(buf, ops, Model(lateness, cap))


@st.composite
def bounded_disorder(draw):
    """Pushes in which each item arrives before max-seen time exceeds its time + lateness."""
    lateness = draw(st.sampled_from([1, S, 5 * S]))  # > 0: with now fixed, never idle
    n = draw(st.integers(0, 80))
    items = []
    for i in range(n):
        t = draw(st.integers(0, 20 * S))
        delay = draw(st.integers(0, lateness))  # arrival key = t + delay <= t + lateness
        items.append((t + delay, i, t, draw(SUBJECTS), draw(st.integers(0, 3))))
    items.sort()
    releases = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    same_message = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    return lateness, [(t, subject, rank) for _, _, t, subject, rank in items], releases, same_message


@PROPS
@given(case=bounded_disorder())
def test_disorder_within_the_lateness_is_fully_repaired(case):
    lateness, items, releases, same_message = case
    buf: ReorderBuffer[int] = ReorderBuffer(lateness, max_buffered=10_000)
    seq, max_seen, inputs, out = 0, None, defaultdict(list), []
    for i, (t, subject, rank) in enumerate(items):
        assert max_seen is None or max_seen <= t + lateness  # the generator's promise
        max_seen = t if max_seen is None else max(max_seen, t)
        seq += 0 if same_message[i] else 1
        buf.push(i, subject=subject, event_time_us=t, rank=rank, sequence=seq, now_us=0)
        inputs[subject].append((t, rank, seq, i))
        if releases[i]:
            out += buf.release(now_us=0)  # never idle: the lateness never elapses
    out += buf.drain()
    assert buf.stats.late == 0 and not any(r.late for r in out)
    outputs = defaultdict(list)
    for r in out:
        outputs[r.subject].append((r.event_time_us, r.rank, r.sequence, r.item))
    assert outputs == {s: sorted(v) for s, v in inputs.items()}
    # No idle or cap release: the whole stream comes out sorted, not just per subject.
    assert [key(r) for r in out] == sorted(key(r) for r in out)


# -- examples: watermark and lateness -----------------------------------------------


def test_items_wait_until_the_watermark_passes_them():
    buf: ReorderBuffer[str] = ReorderBuffer(max_lateness_us=30 * S, max_buffered=100)
    push(buf, "b", "run", 100 * S, seq=1)
    push(buf, "a", "run", 90 * S, seq=2)
    assert buf.release(now_us=0) == []
    push(buf, "x", "other", 120 * S, seq=3)  # watermark = 90 s - 1 µs: "a" still waits
    assert buf.watermark == 90 * S - 1 and buf.release(now_us=0) == []
    push(buf, "y", "other", 120 * S + 1, seq=4)
    assert [r.item for r in buf.release(now_us=0)] == ["a"]
    push(buf, "z", "other", 131 * S, seq=5)
    assert [r.item for r in buf.release(now_us=0)] == ["b"]
    assert [r.item for r in buf.drain()] == ["x", "y", "z"]


def test_ties_break_by_status_rank_then_sequence():
    buf: ReorderBuffer[str] = ReorderBuffer(S, 100)
    push(buf, "completed", "run", 5 * S, rank=11, seq=1)
    push(buf, "running", "run", 5 * S, rank=6, seq=2)
    push(buf, "running-again", "run", 5 * S, rank=6, seq=3)
    assert [r.item for r in buf.drain()] == ["running", "running-again", "completed"]


def test_hours_late_item_is_flagged_counted_and_released_at_once():
    buf: ReorderBuffer[str] = ReorderBuffer(30 * S, 100)
    push(buf, "now", "run/1", 10 * HOUR, seq=1)
    push(buf, "hours-late", "run/2", 7 * HOUR, seq=2)  # subject never seen: watermark rule
    batch = buf.release(now_us=0)
    assert [(r.item, r.late) for r in batch] == [("hours-late", True)]
    assert buf.stats.late == 1 and len(buf) == 1


def test_item_below_its_subjects_release_mark_is_late_even_inside_the_window():
    buf: ReorderBuffer[str] = ReorderBuffer(30 * S, 100)
    push(buf, "running", "run", 100 * S, rank=6, seq=1, now=0)
    assert [r.item for r in buf.release(now_us=30 * S)] == ["running"]  # idle release
    push(buf, "queued", "run", 99 * S, rank=5, seq=2, now=31 * S)  # > watermark, < mark
    push(buf, "same-time-lower-rank", "run", 100 * S, rank=5, seq=3, now=31 * S)
    push(buf, "same-time-same-rank", "run", 100 * S, rank=6, seq=4, now=31 * S)
    push(buf, "other-subject", "run2", 99 * S, seq=5, now=31 * S)
    batch = buf.release(now_us=31 * S)  # not idle, nothing due: only the late ones go
    assert [(r.item, r.late) for r in batch] == [("queued", True), ("same-time-lower-rank", True)]
    assert [(r.item, r.late) for r in buf.drain()] == [
        ("other-subject", False), ("same-time-same-rank", False)]
    assert buf.stats.late == 2


def test_item_exactly_at_the_lateness_bound_is_not_late():
    buf: ReorderBuffer[str] = ReorderBuffer(30 * S, 100)
    push(buf, "early-twin", "run", 70 * S, rank=9, seq=1)
    push(buf, "max", "x", 100 * S, seq=2)
    # Max seen = its time + lateness exactly: nothing at 70 s has been released yet.
    push(buf, "twin", "run", 70 * S, rank=3, seq=3)
    assert [(r.item, r.late) for r in buf.release(0)] == []
    push(buf, "tick", "x", 100 * S + 1, seq=4)
    assert [(r.item, r.late) for r in buf.release(0)] == [("twin", False), ("early-twin", False)]
    push(buf, "now-late", "run", 70 * S, seq=5)  # 70 s <= watermark: late
    assert [(r.item, r.late) for r in buf.release(0)] == [("now-late", True)]


def test_subject_none_is_its_own_group():
    buf: ReorderBuffer[str] = ReorderBuffer(5, 100)
    push(buf, "n10", None, 10, seq=1)
    push(buf, "n8", None, 8, seq=2)
    push(buf, "x20", "x", 20, seq=3)
    assert [(r.item, r.subject, r.late) for r in buf.release(0)] == [
        ("n8", None, False), ("n10", None, False)]
    push(buf, "n12", None, 12, seq=4)  # <= the watermark (20 - 5 - 1 = 14): late
    push(buf, "n16", None, 16, seq=5)
    assert [(r.item, r.late) for r in buf.release(0)] == [("n12", True)]
    assert [(r.item, r.late) for r in buf.drain()] == [("n16", False), ("x20", False)]


# -- examples: cap, idle, drain, clear, frontier ---------------------------------------


def test_cap_forces_the_oldest_out_at_the_next_release():
    buf: ReorderBuffer[str] = ReorderBuffer(HOUR, max_buffered=2)
    for i, t in enumerate([30, 10, 20, 40]):
        push(buf, f"t{t}", "run", t * S, seq=i)
    assert len(buf) == 4  # push only queues
    assert [r.item for r in buf.release(now_us=0)] == ["t10", "t20"]
    assert len(buf) == 2 and buf.stats.forced_by_cap == 2
    push(buf, "t15", "run", 15 * S, seq=9)  # below what the cap released: late
    assert [(r.item, r.late) for r in buf.release(0)] == [("t15", True)]
    assert buf.stats.forced_by_cap == 2


def test_idle_partition_releases_everything_after_the_lateness_and_not_before():
    buf: ReorderBuffer[str] = ReorderBuffer(30 * S, 100)
    push(buf, "b", "run", 2 * S, seq=1, now=1000)
    push(buf, "a", "run", 1 * S, seq=2, now=5000)
    assert buf.release(now_us=5000 + 30 * S - 1) == [] and len(buf) == 2
    assert [r.item for r in buf.release(now_us=5000 + 30 * S)] == ["a", "b"]
    assert len(buf) == 0 and buf.stats.released_idle == 2
    assert buf.release(now_us=10 * HOUR) == []


def test_drain_returns_everything_in_order_late_ones_merged():
    buf: ReorderBuffer[str] = ReorderBuffer(10 * S, 100)
    push(buf, "c", "x", 100 * S, seq=1)
    push(buf, "late", "y", 50 * S, seq=2)
    push(buf, "b", "x", 95 * S, seq=3)
    assert [(r.item, r.late) for r in buf.drain()] == [("late", True), ("b", False), ("c", False)]
    assert len(buf) == 0 and buf.oldest_sequence is None and buf.stats.released == 3


def test_clear_drops_everything_and_starts_afresh():
    buf: ReorderBuffer[str] = ReorderBuffer(10 * S, 100)
    push(buf, "a", "x", 100 * S, seq=50)
    push(buf, "b", "x", 10 * S, seq=51)  # late
    assert buf.clear() == 2
    assert len(buf) == 0 and buf.oldest_sequence is None and buf.watermark is None
    assert buf.release(HOUR) == [] and buf.drain() == []
    assert buf.stats.dropped == 2 and buf.stats.released == 0
    push(buf, "again", "x", 10 * S, seq=40)  # re-read from an older checkpoint: fine, not late
    assert [(r.item, r.late) for r in buf.drain()] == [("again", False)]


def test_oldest_sequence_is_the_checkpoint_frontier():
    buf: ReorderBuffer[str] = ReorderBuffer(10 * S, 100)
    assert buf.oldest_sequence is None
    push(buf, "slow", "x", 200 * S, seq=7)
    push(buf, "a0", "y", 100 * S, seq=8)  # one message, two events: same sequence
    push(buf, "a1", "y", 205 * S, seq=8)
    push(buf, "fast", "z", 150 * S, seq=9)
    assert buf.oldest_sequence == 7
    push(buf, "tick", "z", 211 * S, seq=10)
    assert [r.item for r in buf.release(0)] == ["a0", "fast", "slow"]
    assert buf.oldest_sequence == 8  # a1 still held: nothing from message 8 on is safe
    push(buf, "tick2", "z", 400 * S, seq=11)
    assert [r.item for r in buf.release(0)] == ["a1", "tick"]
    assert buf.oldest_sequence == 11


def test_frontier_survives_compaction_with_shared_sequences():
    buf: ReorderBuffer[str] = EagerBuffer(20 * S, 100)
    push(buf, "pinned", "p", 100 * HOUR, seq=1)  # held while time stands still
    push(buf, "gone", "x", 0, seq=2)
    push(buf, "array-0", "y", 0, seq=3)  # one message, two events
    push(buf, "array-1", "y", 100 * HOUR + 10 * S, seq=3)
    for seq in range(4, 10):
        push(buf, "late", "z", 0, seq=seq)
    assert len(buf.release(now_us=0)) == 8  # compaction runs here (arrivals > 2 * held)
    assert buf.oldest_sequence == 1 and len(buf) == 2
    push(buf, "tick", "p", 100 * HOUR + 20 * S + 1, seq=10)
    assert [r.item for r in buf.release(now_us=0)] == ["pinned"]
    assert buf.oldest_sequence == 3  # array-1 is still held: message 3 is not done
    push(buf, "tick2", "p", 100 * HOUR + 30 * S + 1, seq=11)
    assert [r.item for r in buf.release(now_us=0)] == ["array-1"]
    assert buf.oldest_sequence == 10


def test_sequence_must_not_go_backwards():
    buf: ReorderBuffer[str] = ReorderBuffer(S, 100)
    push(buf, "a", "x", 1, seq=5)
    push(buf, "b", "x", 2, seq=5)
    with pytest.raises(ValueError, match="sequence 4 after 5"):
        push(buf, "c", "x", 3, seq=4)


@pytest.mark.parametrize("args", [(-1, 10), (1, -1)])
def test_rejects_negative_settings(args):
    with pytest.raises(ValueError):
        ReorderBuffer(*args)


# -- memory bounds ------------------------------------------------------------------------


def test_release_marks_of_old_subjects_are_pruned():
    buf: ReorderBuffer[int] = ReorderBuffer(S, 100)
    for i in range(20_000):  # every run seen once, time moving on
        push(buf, i, f"runs/{i}", i * S // 10)
        buf.release(0)
    assert len(buf._marks) <= 2 * buf._MARK_SWEEP_FLOOR + 20


def test_marks_just_above_the_watermark_survive_sweeps():
    buf: ReorderBuffer[str] = EagerBuffer(10, max_buffered=0)  # sweeps at every release
    push(buf, "x", "other", 110, seq=1)  # watermark 99
    push(buf, "a", "run", 100, rank=5, seq=2)
    assert [r.item for r in buf.release(0)] == ["a", "x"]  # by the cap: mark (100, 5) > 99
    push(buf, "b", "run", 100, rank=3, seq=3)
    assert [(r.item, r.late) for r in buf.release(0)] == [("b", True)]


def test_a_pinned_item_does_not_grow_the_frontier_bookkeeping():
    buf: ReorderBuffer[int] = ReorderBuffer(S, 1000)
    push(buf, 0, "future", 100 * HOUR)  # far-future time: held until idle
    for i in range(1, 20_000):
        push(buf, i, "run", i)  # all late against the future watermark: released at once
        buf.release(0)
    assert buf.oldest_sequence == 0 and len(buf) == 1
    assert len(buf._arrivals) <= 2 * len(buf) + buf._FRONTIER_SLACK + 1
    assert [r.item for r in buf.release(now_us=S)] == [0]
