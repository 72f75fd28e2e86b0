"""receive_batch with the real BlobCheckpointStore on Azurite against the local hub."""

from __future__ import annotations

import asyncio

import pytest
from azure.eventhub import EventData
from azure.eventhub.aio import EventHubConsumerClient, EventHubProducerClient
from azure.eventhub.extensions.checkpointstoreblobaio import BlobCheckpointStore

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

PARTITIONS = ["0", "1", "2", "3"]


async def _send_per_partition(cs: str, start: int, count: int) -> None:
    producer = EventHubProducerClient.from_connection_string(cs)
    async with producer:
        for pid in PARTITIONS:
            await producer.send_batch([EventData(f"p{pid}-{i}") for i in range(start, start + count)],
                                      partition_id=pid)


async def _receive_batches(cs: str, store: BlobCheckpointStore, on_batch, done: asyncio.Event) -> None:
    client = EventHubConsumerClient.from_connection_string(
        cs, consumer_group="$Default", checkpoint_store=store, load_balancing_interval=0.5,
        load_balancing_strategy="greedy", partition_ownership_expiration_interval=2)
    async with client:
        task = asyncio.create_task(client.receive_batch(on_batch, max_batch_size=2, max_wait_time=0.5,
                                                        starting_position="-1"))
        await asyncio.wait_for(done.wait(), 30)
    try:
        await asyncio.wait_for(task, 5)  # receive_batch returns one interval after close
    except asyncio.TimeoutError:
        pass


@pytest.mark.asyncio
async def test_checkpoints_written_to_azurite_and_second_client_resumes_after_them(
        local_hub, make_hub, azurite, checkpoint_container):
    hub = make_hub(4)
    cs = local_hub.connection_string(hub)
    await _send_per_partition(cs, 0, 5)

    # First client: reads everything, checkpoints only up to the 3rd event (seq 2) per partition.
    first_seen: dict[str, list[int]] = {pid: [] for pid in PARTITIONS}
    checkpointed: dict[str, EventData] = {}
    first_done = asyncio.Event()

    async def checkpoint_third(context, events):
        first_seen[context.partition_id].extend(e.sequence_number for e in events)
        for event in events:
            if event.sequence_number == 2:
                await context.update_checkpoint(event)
                checkpointed[context.partition_id] = event
        if len(checkpointed) == 4 and all(len(v) >= 5 for v in first_seen.values()):
            first_done.set()

    store = BlobCheckpointStore.from_connection_string(azurite.connection_string, checkpoint_container)
    async with store:
        await _receive_batches(cs, store, checkpoint_third, first_done)
    assert first_seen == {pid: [0, 1, 2, 3, 4] for pid in PARTITIONS}

    blobs = azurite.list_blobs(checkpoint_container)
    prefix = f"127.0.0.1:{local_hub.port}/{hub}/$default".lower()
    for pid in PARTITIONS:
        assert f"{prefix}/ownership/{pid}" in blobs
        meta = blobs[f"{prefix}/checkpoint/{pid}"]
        assert meta["sequencenumber"] == "2"
        assert meta["offset"] == checkpointed[pid].offset

    # Second client (fresh store object): resumes exactly after each checkpoint.
    await _send_per_partition(cs, 5, 2)
    second_seen: dict[str, list[int]] = {pid: [] for pid in PARTITIONS}
    second_done = asyncio.Event()

    async def record(context, events):
        second_seen[context.partition_id].extend(e.sequence_number for e in events)
        if all(len(v) >= 4 for v in second_seen.values()):
            second_done.set()

    store2 = BlobCheckpointStore.from_connection_string(azurite.connection_string, checkpoint_container)
    async with store2:
        await _receive_batches(cs, store2, record, second_done)
        checkpoints = await store2.list_checkpoints(f"127.0.0.1:{local_hub.port}", hub, "$Default")
    assert second_seen == {pid: [3, 4, 5, 6] for pid in PARTITIONS}
    assert sorted(c["partition_id"] for c in checkpoints) == PARTITIONS
