"""How far a partition's durable rows are behind its hub: pure arithmetic, no I/O, no clock.

Event Hubs publishes no consumer lag. The worker knows, per owned partition, the last
event the hub enqueued (from the SDK's last-enqueued-event tracking on every received
batch, and from `get_partition_properties` polled every `[metrics] lag_poll_s`) and the
last event it made durable (its last checkpoint). Lag is the difference:

- in events: last enqueued sequence number - last durable sequence number (0 when
  nothing was enqueued past it);
- in seconds: last enqueued time - enqueued time of the last durable event (0 when caught
  up). When that time is unknown (nothing checkpointed since the claim), the first event
  received in the claim stands for it, or the claim itself when none arrived: events
  enqueued before the claim then count from it, never as older.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Position:
    """An event of a partition: its sequence number and enqueued time (us since the epoch)."""

    sequence_number: int
    enqueued_us: int | None = None


@dataclass(frozen=True, slots=True)
class Lag:
    events: int
    seconds: float


def partition_lag(last_enqueued: Position | None, durable: Position | None, durable_since_us: int) -> Lag:
    """Lag of a partition whose hub last enqueued `last_enqueued` (None: unknown yet, or
    empty) and whose last durable event is `durable` (None: nothing of it is durable, so
    every enqueued event counts). `durable_since_us` stands for the durable event's
    enqueued time when that is unknown (the claim's wall time)."""
    if last_enqueued is None:
        return Lag(0, 0.0)
    durable_seq = -1 if durable is None else durable.sequence_number
    events = max(0, last_enqueued.sequence_number - durable_seq)
    if events == 0 or last_enqueued.enqueued_us is None:
        return Lag(events, 0.0)
    since = durable.enqueued_us if durable is not None and durable.enqueued_us is not None else durable_since_us
    return Lag(events, max(0, last_enqueued.enqueued_us - since) / 1e6)


def later(a: Position | None, b: Position | None) -> Position | None:
    """The more recent of two reports of a partition's last enqueued event: the batch
    annotations and the polled properties arrive in any order."""
    if a is None:
        return b
    if b is None or b.sequence_number <= a.sequence_number:
        return a
    return b
