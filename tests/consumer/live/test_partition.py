"""The partition pipeline's checkpoint rule: never past an event still buffered."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.live.partition import Message, PartitionPipeline
from consumer.live.spill import BodySpill
from tests.support.events import run_event
from transforms.decode import DecodeRules

SECOND = 1_000_000


def pipeline(lateness_s: float = 10, cap: int = 1000) -> PartitionPipeline:
    return PartitionPipeline("ns/eh", "0", DecodeRules(), int(lateness_s * SECOND), cap, 300 * SECOND)


def message(seq: int, minute: int, second: int = 0, body: bytes | None = None) -> Message:
    raw = body or run_event(f"run-{seq % 3}", "Running", f"2025-01-01T10:{minute:02d}:{second:02d}Z",
                            event_id=f"e{seq}")
    return Message(raw, str(seq * 100), seq, None)


def test_checkpoint_stops_before_the_oldest_buffered_event():
    p = pipeline(lateness_s=60)
    p.accept([message(1, 0), message(2, 5), message(3, 1)], now_us=0, ingested_us=0)
    # watermark = 10:05 - 60s: 10:00 and 10:01 released, 10:05 (sequence 2) still buffered
    mark = p.confirm_durable()
    assert mark is not None and mark.sequence_number == 1
    p.accept([message(4, 7)], now_us=1, ingested_us=0)  # watermark 10:06 releases sequence 2
    assert p.confirm_durable().sequence_number == 3  # 4 is buffered
    p.drain()
    assert p.confirm_durable().sequence_number == 4


def test_dead_letters_do_not_hold_the_checkpoint_back_but_buffered_events_do():
    p = pipeline(lateness_s=60)
    rows, bad = p.accept([message(1, 0, body=b"{broken"), message(2, 0)], now_us=0, ingested_us=0)
    assert [d.reason for d in bad.dead_letters] == ["invalid_json"]
    assert len(rows.rows["dead_letters"]) == 1
    assert p.confirm_durable().sequence_number == 1  # the event at sequence 2 is buffered


def test_ownership_loss_forgets_unflushed_state():
    p = pipeline()
    p.accept([message(1, 0)], now_us=0, ingested_us=0)
    assert p.reset() == 1
    assert p.confirm_durable() is None and len(p.buffer) == 0


def test_fresh_events_are_shown_once_and_settled_when_they_leave_the_buffer():
    p = pipeline(lateness_s=60)
    p.accept([message(1, 0), message(2, 0, 30)], now_us=0, ingested_us=0)  # both within 60 s
    assert sorted(r.raw[3] for r in p.take_fresh(version=1)) == ["e1", "e2"]  # event_id column
    assert p.take_fresh(version=2) == []  # nothing new since
    p.accept([message(3, 7), message(4, 7, 1)], now_us=1, ingested_us=0)  # releases e1, e2
    assert p.take_done() == {1: 2}
    assert sorted(r.raw[3] for r in p.take_fresh(version=3)) == ["e3", "e4"]
    p.accept([message(5, 30)], now_us=2, ingested_us=0)  # releases e3, e4 (shown in 3), e5 never shown
    p.drain()
    assert p.take_done() == {3: 2} and p.take_fresh(version=4) == []


def test_an_event_released_before_any_flush_is_never_shown():
    p = pipeline(lateness_s=1)
    p.accept([message(1, 0), message(2, 5)], now_us=0, ingested_us=0)  # e1 released at once
    assert [r.raw[3] for r in p.take_fresh(version=1)] == ["e2"]
    assert p.take_done() == {}


def test_ownership_loss_settles_what_was_shown():
    p = pipeline(lateness_s=60)
    p.accept([message(1, 0), message(2, 0, 30)], now_us=0, ingested_us=0)
    p.take_fresh(version=7)
    p.accept([message(3, 0, 40)], now_us=0, ingested_us=0)
    p.reset()
    assert p.take_done() == {7: 2} and p.take_fresh(version=8) == []


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 40), st.integers(0, 59), st.integers(0, 4)), min_size=1, max_size=60),
       st.integers(0, 5))
def test_compacted_events_come_out_exactly_as_the_rows_they_replaced(arrivals, compact_above):
    """A buffer that keeps events as bodies and re-decodes them at release writes the
    same rows, in the same order, as one that keeps rows."""
    from tests.support.rows import as_dicts

    def stream(p):
        out = []
        for seq, (minute, second, shape) in enumerate(arrivals, start=1):
            at = f"2025-01-01T10:{minute:02d}:{second:02d}.1234567+00:00"
            body = run_event(f"run-{seq % 4}", ["Running", "Completed", "failed"][shape % 3], at,
                             event_id=f"e{seq}")
            if shape == 3:  # an array body: its elements come back by index
                other = run_event(f"run-{(seq + 1) % 4}", "Queued", at, event_id=f"e{seq}b")
                body = b"[" + body + b"," + other + b"]"
            elif shape == 4:
                body = b"{broken"
            rows, _ = p.accept([Message(body, str(seq), seq, 1_735_725_600_000_000 + seq)], now_us=seq,
                               ingested_us=7)
            out.append(as_dicts(rows))
        out.append(as_dicts(p.drain()))
        return out

    plain = pipeline(lateness_s=120)
    plain.compact_above = 10**9
    compacting = pipeline(lateness_s=120)
    compacting.compact_above = compact_above
    expected = stream(plain)
    assert stream(compacting) == expected
    with tempfile.TemporaryDirectory() as folder:
        spilling = pipeline(lateness_s=120)
        spilling.compact_above = compact_above
        spilling.spill = BodySpill(Path(folder) / "p0", segment_bytes=2048)  # a few bodies per segment
        assert stream(spilling) == expected
        assert spilling.spill.segments <= 1  # taken back: only the one being written may stay


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 30), st.integers(0, 3), st.booleans()), min_size=1, max_size=40))
def test_ready_mark_never_passes_a_buffered_event(steps):
    """Whatever arrives and whenever flushes happen, `ready` is below every buffered sequence,
    and after a drain every message is confirmed."""
    p = pipeline(lateness_s=120, cap=8)
    seq, now = 0, 0
    for minute, batch, flush in steps:
        messages = []
        for _ in range(batch):
            seq += 1
            messages.append(message(seq, minute % 60, seq % 60))
        now += SECOND
        p.accept(messages, now_us=now, ingested_us=0)
        if flush:
            mark = p.confirm_durable()
            oldest = p.buffer.oldest_sequence
            if mark is not None and oldest is not None:
                assert mark.sequence_number < oldest
    p.drain()
    final = p.confirm_durable()
    assert (final.sequence_number if final else 0) == seq
    assert not p.unconfirmed


def _us(iso: str) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(iso).timestamp() * SECOND)


def test_an_event_stamped_far_ahead_is_ordered_at_enqueued_plus_skew_and_does_not_pin_the_partition():
    """A producer clock two hours fast: the event orders as enqueued + max_future_skew (5 min),
    so later events on time neither go late nor wait behind it, and the checkpoint frontier
    passes it once the partition's watermark passes enqueued + skew, long before its stamp."""
    from tests.support.rows import as_dicts

    p = pipeline(lateness_s=10)  # max_future_skew: 300 s
    assert p.max_future_skew_us == 300 * SECOND

    def sent(seq: int, event_time: str, enqueued: str) -> Message:
        body = run_event(f"run-{seq}", "Running", event_time, event_id=f"e{seq}")
        return Message(body, str(seq * 100), seq, _us(enqueued))

    def released(rows) -> list[tuple[str, bool]]:
        return [(r["event_id"], r["late"]) for r in as_dicts(rows)["raw_events"]]

    rows, _ = p.accept([sent(1, "2025-01-01T10:00:00Z", "2025-01-01T10:00:00Z"),
                        sent(2, "2025-01-01T12:00:00Z", "2025-01-01T10:00:01Z")],  # the fast clock
                       now_us=0, ingested_us=0)
    assert released(rows) == [("e1", False)]  # e2 holds: it orders at 10:05:01, not yet due
    assert p.confirm_durable().sequence_number == 1
    # on-time traffic six minutes later: the watermark (10:05:50) passes 10:05:01
    rows, _ = p.accept([sent(3, "2025-01-01T10:06:00Z", "2025-01-01T10:06:00Z")], now_us=1, ingested_us=0)
    assert released(rows) == [("e2", False)]  # out on time, with its real (future) event time kept
    assert as_dicts(rows)["raw_events"][0]["event_time"] == _us("2025-01-01T12:00:00Z")
    assert p.confirm_durable().sequence_number == 2  # the checkpoint moved past the fast event
    rows, _ = p.accept([sent(4, "2025-01-01T10:06:30Z", "2025-01-01T10:06:30Z")], now_us=2, ingested_us=0)
    assert released(rows) == [("e3", False)]  # in order and not late: the fast clock set no watermark
    assert p.confirm_durable().sequence_number == 3
    assert p.counters.late == 0 and len(p.buffer) == 1
