"""Child program of worker_throughput: the raw SDK baseline, a minimal consumer.

    python -m bench.raw_consumer --hub-cs CS --checkpoint-cs CS --container NAME --out FILE \
        --expected N --lb-interval S --ownership-expiration S --max-wait-time S --timeout S \
        --prefetch N --max-batch-size N

EventHubConsumerClient.receive_batch from earliest with a BlobCheckpointStore, balanced load
balancing, and the worker's prefetch / max_batch_size / max_wait_time (passed in by the
parent). It only counts, and awaits `update_checkpoint(last event)` once per non-empty batch,
as a minimal consumer would. It stops once it has received `--expected` events and writes
{count, batches, first_claim, first_event, done} (wall times) as JSON to `--out`.

Only the SDK and the standard library are imported: the parent times this process from its
start, so it should load what a minimal consumer loads.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path


async def consume(a: argparse.Namespace) -> dict:
    from azure.eventhub.aio import EventHubConsumerClient
    from azure.eventhub.extensions.checkpointstoreblobaio import BlobCheckpointStore

    out = {"count": 0, "batches": 0, "first_claim": None, "first_event": None, "done": None}
    done = asyncio.Event()
    store = BlobCheckpointStore.from_connection_string(a.checkpoint_cs, container_name=a.container)
    client = EventHubConsumerClient.from_connection_string(
        a.hub_cs, consumer_group="$Default", checkpoint_store=store,
        load_balancing_strategy="balanced", load_balancing_interval=a.lb_interval,
        partition_ownership_expiration_interval=a.ownership_expiration)

    async def on_init(_context) -> None:
        out["first_claim"] = out["first_claim"] or time.time()

    async def on_batch(context, events) -> None:
        if not events:
            return
        if out["first_event"] is None:
            out["first_event"] = time.time()
        out["count"] += len(events)
        out["batches"] += 1
        await context.update_checkpoint(events[-1])
        if out["count"] >= a.expected and out["done"] is None:
            out["done"] = time.time()
            done.set()

    async with store, client:
        task = asyncio.create_task(client.receive_batch(
            on_batch, max_batch_size=a.max_batch_size, max_wait_time=a.max_wait_time, prefetch=a.prefetch,
            starting_position="-1", on_partition_initialize=on_init))
        waiter = asyncio.create_task(done.wait())
        await asyncio.wait({task, waiter}, timeout=a.timeout, return_when=asyncio.FIRST_COMPLETED)
        await client.close()
        for t in (task, waiter):
            t.cancel()
        await asyncio.gather(task, waiter, return_exceptions=True)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.raw_consumer", description=__doc__.split("\n\n")[0])
    for name in ("hub_cs", "checkpoint_cs", "container", "out"):
        p.add_argument(f"--{name.replace('_', '-')}", required=True)
    p.add_argument("--expected", type=int, required=True)
    for name in ("lb_interval", "ownership_expiration", "max_wait_time", "timeout"):
        p.add_argument(f"--{name.replace('_', '-')}", type=float, required=True)
    for name in ("prefetch", "max_batch_size"):
        p.add_argument(f"--{name.replace('_', '-')}", type=int, required=True)
    args = p.parse_args(argv)
    Path(args.out).write_text(json.dumps(asyncio.run(consume(args))))  # read by the bench
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
