"""The backlog that worker_throughput publishes before a consumer starts.

N devstack.synth events (run lifecycles + model/drift events, ~1.5 KB mean body, 30% one-element
JSON arrays, 20% CloudEvents), shuffled within 3 events (synth.disorder) with 1% moved to a
random later position (hours late), no redeliveries (one message = one raw_events row); event
times span `span_s` ending 10 minutes ago; partition = crc32(subject) % P.

The stream is replayed through transforms.ordering.ReorderBuffer to know H, the events the
worker's reorder buffer holds at the end of this finite stream (per partition, those within
max_lateness of its newest event time), which it releases only once the partition has been
idle max_lateness s.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

from bench.worker_common import partition_of


@dataclass(frozen=True)
class Backlog:
    by_partition: dict[str, list[bytes]]
    messages: int
    held: int  # held by the reorder buffer at the end until the partition idles
    late: int  # flagged late by the reorder buffer
    mean_bytes: float
    mix: dict[str, int] = field(default_factory=dict)


def build(events: int, partitions: int, seed: int, payload_bytes: int, span_s: int,
          lateness_s: float) -> Backlog:
    from devstack.synth import disorder, generate
    from transforms.decode import DecodeRules, decode_body
    from transforms.ordering import ReorderBuffer
    from transforms.records import AML_EVENT_TYPES, Origin

    rules = DecodeRules.build([], list(AML_EVENT_TYPES))

    def bodies_from(start_us: int) -> list[bytes]:
        stream = generate(events // 6 + 50, seed=seed, start_us=start_us, span_s=span_s,
                          payload_bytes=payload_bytes)
        # window=3: at this density (~0.7 events/s of event time) local shuffles stay within
        # a few seconds, below max_lateness, like Event Grid's delivery disorder.
        bodies = disorder(stream.bodies, seed=seed + 1, dup_share=0.0, late_share=0.0, window=3)
        # ~1% hours-late events, each moved to a random *later* position. (synth.disorder's
        # late_share may insert an event before its original position, i.e. hours early:
        # that pushes its partition's watermark ahead and flags everything up to its
        # original position late, which is not what a live hub looks like.)
        rng = random.Random(seed + 2)
        for i in sorted(rng.sample(range(len(bodies)), len(bodies) // 100), reverse=True):
            bodies.insert(rng.randrange(i + 1, len(bodies) + 1), bodies.pop(i))
        return bodies[:events]

    # A backlog: every event time in the past. Runs created near the end of the span end
    # hours later, so generate once to find the newest time, then again shifted so that it
    # is 10 minutes ago (the same seed gives the same offsets). A future event time would
    # be ordered at enqueued + max_future_skew and make every other event late.
    newest = max(decode_body(b, Origin("eventhub"), rules).events[0].envelope.event_time_us
                 for b in bodies_from(0))
    bodies = bodies_from(time.time_ns() // 1000 - 600_000_000 - newest)
    buffers = [ReorderBuffer(int(lateness_s * 1e6), 10**9) for _ in range(partitions)]
    by_partition: dict[str, list[bytes]] = {str(p): [] for p in range(partitions)}
    mix: dict[str, int] = {}
    for body in bodies:
        decoded = decode_body(body, Origin("eventhub"), rules)
        if len(decoded.events) != 1 or decoded.dead_letters:
            raise RuntimeError(f"devstack.synth produced a body that is not one event: {body[:200]!r}")
        env = decoded.events[0].envelope
        p = partition_of(env.subject, partitions)
        buffers[p].push(None, subject=env.subject, event_time_us=env.event_time_us, rank=0,
                        sequence=len(by_partition[str(p)]), now_us=0)
        by_partition[str(p)].append(body)
        kind = env.event_type.rsplit(".", 1)[-1]
        mix[kind] = mix.get(kind, 0) + 1
    held = late = 0
    for buffer in buffers:
        buffer.release(0)
        held += len(buffer)
        late += buffer.stats.late
    return Backlog(by_partition, len(bodies), held, late, sum(map(len, bodies)) / len(bodies), mix)


async def publish(cs: str, by_partition: dict[str, list[bytes]]) -> None:
    """Each partition's bodies, in order, onto that partition, in as few batches as fit."""
    from azure.eventhub.aio import EventHubProducerClient

    from devstack.sdk_helpers import send_batched

    producer = EventHubProducerClient.from_connection_string(cs)
    async with producer:
        for pid, bodies in by_partition.items():
            await send_batched(producer, bodies, partition_id=pid)
