"""Throughput of the real azure-eventhub SDK against the local hub, and the hub's own CPU cost.

    python bench/bench_hub.py [--events 20000] [--size 1500] [--partitions 4] [--repeats 3]

Each repeat uses a fresh hub: one producer client sends all events in full batches (partitions
in turn), then one consumer client drains them with receive_batch over all partitions. The hub
runs in its own process, so its CPU seconds (psutil) are measured apart from the client's. Later
benchmarks rely on this to know the hub is not their bottleneck.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid

import psutil

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from azure.eventhub import EventData  # noqa: E402
from azure.eventhub.aio import EventHubConsumerClient, EventHubProducerClient  # noqa: E402

from devstack import LocalHub  # noqa: E402


def cpu_seconds(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return t.user + t.system


class Phase:
    """Wall time plus hub and client CPU seconds over a block."""

    def __init__(self, hub_proc: psutil.Process):
        self.hub_proc = hub_proc
        self.client_proc = psutil.Process()

    def __enter__(self):
        self.t0, self.hub0, self.cli0 = time.perf_counter(), cpu_seconds(self.hub_proc), cpu_seconds(self.client_proc)
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.t0
        self.hub_cpu = cpu_seconds(self.hub_proc) - self.hub0
        self.client_cpu = cpu_seconds(self.client_proc) - self.cli0


async def send_all(cs: str, partitions: list[str], events: int, body: bytes, hub_proc: psutil.Process) -> Phase:
    """Bulk send with a warm client (its links to every partition already open); the returned
    phase covers building and sending the batches, not connection setup."""
    producer = EventHubProducerClient.from_connection_string(cs)
    async with producer:
        for pid in partitions:
            await producer.send_batch([EventData(b"warm-up")], partition_id=pid)
        with Phase(hub_proc) as phase:
            await _send_batches(producer, partitions, events, body)
    return phase


async def _send_batches(producer: EventHubProducerClient, partitions: list[str], events: int, body: bytes) -> None:
    sent = 0
    turn = 0
    while sent < events:
        batch = await producer.create_batch(partition_id=partitions[turn % len(partitions)])
        turn += 1
        while sent < events:
            try:
                batch.add(EventData(body))
            except ValueError:  # batch full (the hub announces the SDK's 1 MiB limit)
                break
            sent += 1
        await producer.send_batch(batch)


async def receive_all(cs: str, events: int) -> float:
    """Drain `events` with receive_batch; returns seconds from the first event to the last."""
    client = EventHubConsumerClient.from_connection_string(cs, consumer_group="$Default", load_balancing_interval=1)
    received = 0
    first_at: float | None = None
    done = asyncio.Event()

    async def on_batch(_context, batch):
        nonlocal received, first_at
        if batch and first_at is None:
            first_at = time.perf_counter()
        received += len(batch)
        if received >= events:
            done.set()

    async with client:
        task = asyncio.create_task(client.receive_batch(on_batch, max_batch_size=300, starting_position="-1"))
        await asyncio.wait_for(done.wait(), 300)
        last_at = time.perf_counter()
    task.cancel()
    return last_at - (first_at or last_at)


def run(args: argparse.Namespace) -> list[dict[str, float]]:
    body = (b'{"event":"run_state","payload":"' + b"x" * args.size)[: args.size - 2] + b'"}'
    partitions = [str(i) for i in range(args.partitions)]
    results = []
    with LocalHub("eh1:1") as hub:
        hub_proc = psutil.Process(hub.pid)
        for repeat in range(args.repeats):
            name = f"bench-{repeat}-{uuid.uuid4().hex[:6]}"
            hub.create_hub(name, args.partitions)
            cs = hub.connection_string(name)
            send = asyncio.run(send_all(cs, partitions, args.events, body, hub_proc))
            with Phase(hub_proc) as recv:
                steady = asyncio.run(receive_all(cs, args.events + len(partitions)))
            results.append({
                "send_eps": args.events / send.wall,
                "send_hub_us": send.hub_cpu / args.events * 1e6,
                "send_hub_core": send.hub_cpu / send.wall,
                "send_client_core": send.client_cpu / send.wall,
                "recv_eps": args.events / recv.wall,
                "recv_steady_eps": args.events / steady if steady else float("nan"),
                "recv_hub_us": recv.hub_cpu / args.events * 1e6,
                "recv_hub_core": recv.hub_cpu / recv.wall,
                "recv_client_core": recv.client_cpu / recv.wall,
            })
            print(f"repeat {repeat + 1}/{args.repeats}: send {results[-1]['send_eps']:.0f} ev/s, "
                  f"receive {results[-1]['recv_eps']:.0f} ev/s", file=sys.stderr)
    return results


ROWS = [
    ("send: events/s (one warm producer client)", "send_eps", "{:,.0f}"),
    ("send: hub CPU per event (us)", "send_hub_us", "{:.1f}"),
    ("send: hub CPU (cores)", "send_hub_core", "{:.2f}"),
    ("send: client CPU (cores)", "send_client_core", "{:.2f}"),
    ("receive_batch: events/s first..last event", "recv_steady_eps", "{:,.0f}"),
    ("receive_batch: events/s incl. connecting", "recv_eps", "{:,.0f}"),
    ("receive: hub CPU per event (us)", "recv_hub_us", "{:.1f}"),
    ("receive: hub CPU (cores)", "recv_hub_core", "{:.2f}"),
    ("receive: client CPU (cores)", "recv_client_core", "{:.2f}"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--size", type=int, default=1500, help="event body bytes")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    results = run(args)
    print(f"\nlocal hub bench: {args.events} events x {args.size} B, {args.partitions} partitions, "
          f"median of {args.repeats} (min..max)")
    width = max(len(label) for label, _, _ in ROWS)
    for label, key, fmt in ROWS:
        values = [r[key] for r in results]
        print(f"  {label:<{width}}  {fmt.format(statistics.median(values)):>9}  "
              f"({fmt.format(min(values))}..{fmt.format(max(values))})")


if __name__ == "__main__":
    main()
