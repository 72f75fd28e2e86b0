"""Child program of worker_rss and worker_latency: live traffic at a fixed rate.

    python -m bench.live_producer --hub-cs CS --out FILE --partitions P --rate R --seconds S \
        [--seed 5] [--payload-bytes 1620]

devstack.synth run lifecycles and model/drift events, in their original event-time order, each
sent with eventTime (or CloudEvents `time`) rewritten to its send time and keyed by subject onto
P partitions. Every tick (50 ms; 100 ms above 1,000 events/s) it sends what is due by then, so
the hub sees R events/s on average. Writes {start, end, sent, rate, max_behind_s} (wall times;
max_behind_s: the most the producer fell behind its schedule) as JSON to `--out`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `bench` and `devstack` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.worker_common import partition_of  # noqa: E402


async def produce(a: argparse.Namespace) -> dict:
    import orjson
    from azure.eventhub import EventData
    from azure.eventhub.aio import EventHubProducerClient

    from devstack.sdk_helpers import send_batched
    from devstack.synth import _iso, generate

    total = int(a.rate * a.seconds) + 1
    docs = []
    runs = total // 5 + 50
    while len(docs) < total:  # run lifecycles in (original) event-time order, times rewritten below
        stream = generate(runs, seed=a.seed + len(docs), payload_bytes=a.payload_bytes)
        docs.extend(orjson.loads(b) for b in stream.bodies)
    rng = random.Random(a.seed)
    plan = []
    for doc in docs[:total]:
        env = doc[0] if isinstance(doc, list) else doc
        plan.append((doc, env, "eventTime" if "eventTime" in env else "time",
                     str(partition_of(env.get("subject"), a.partitions))))
    producer = EventHubProducerClient.from_connection_string(a.hub_cs)
    sent = 0
    behind = 0.0
    tick = 0.05 if a.rate <= 1000 else 0.1

    async with producer:
        await producer.get_eventhub_properties()  # connect before the clock starts
        start = time.time()
        next_tick = start
        while True:
            now = time.time()
            if now - start >= a.seconds:
                break
            due = min(total, int(a.rate * (now - start)) + 1) - sent
            if due > 0:
                now_us = time.time_ns() // 1000
                groups: dict[str, list] = {}
                for k in range(due):
                    doc, env, key, pid = plan[sent + k]
                    env[key] = _iso(now_us + k, rng)  # event time = send time
                    groups.setdefault(pid, []).append(EventData(orjson.dumps(doc)))
                await asyncio.gather(*(send_batched(producer, events, partition_id=pid)
                                       for pid, events in groups.items()))
                sent += due
            behind = max(behind, (time.time() - start) - sent / a.rate)
            next_tick += tick
            await asyncio.sleep(max(0.0, next_tick - time.time()))
        end = time.time()
    return {"start": start, "end": end, "sent": sent, "rate": sent / (end - start), "max_behind_s": behind}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.live_producer", description=__doc__.split("\n\n")[0])
    p.add_argument("--hub-cs", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--partitions", type=int, required=True)
    p.add_argument("--rate", type=float, required=True)
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--seed", type=int, default=5)
    p.add_argument("--payload-bytes", type=int, default=1620)
    args = p.parse_args(argv)
    sent = asyncio.run(produce(args))
    Path(args.out).write_text(json.dumps(sent))  # read by worker_rss / worker_latency
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
