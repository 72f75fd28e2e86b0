"""Fault injection: each knob gives the real SDK what the real service would, and it recovers."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from azure.core.exceptions import ServiceRequestError
from azure.eventhub import EventData
from azure.eventhub.aio import EventHubProducerClient
from azure.eventhub.exceptions import ConnectError
from azure.eventhub.extensions.checkpointstoreblobaio import BlobCheckpointStore

from devstack import Azurite
from devstack.sdk_helpers import BackgroundReceiver, bodies, receive_events

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


@pytest.mark.asyncio
@pytest.mark.parametrize("graceful", [False, True], ids=["tcp-abort", "connection-forced"])
async def test_drop_all_connections_then_clients_recover(local_hub, fresh_hub_name, graceful):
    cs = local_hub.connection_string(fresh_hub_name)
    producer = EventHubProducerClient.from_connection_string(cs)
    async with producer, BackgroundReceiver(cs) as consumer:
        await producer.send_batch([EventData(f"before{i}") for i in range(5)], partition_id="0")
        await consumer.wait_for(5)
        assert local_hub.drop_all_connections(graceful=graceful) >= 2
        # The same producer and consumer objects reconnect by themselves.
        await producer.send_batch([EventData(f"after{i}") for i in range(5)], partition_id="0")
        # a partition delivers in order: a redelivery would arrive before this last one
        await producer.send_batch([EventData("last")], partition_id="0")
        await consumer.wait_for(11, timeout=60)
    assert bodies(consumer.events) == [f"before{i}" for i in range(5)] + [f"after{i}" for i in range(5)] + ["last"]
    assert [e.sequence_number for e in consumer.events] == list(range(11))


@pytest.mark.asyncio
async def test_refuse_connections_gives_connect_error_then_recovers(local_hub, fresh_hub_name, caplog):
    cs = local_hub.connection_string(fresh_hub_name)
    caplog.set_level(logging.INFO, logger="azure.eventhub")  # where the SDK reports its retries
    established = EventHubProducerClient.from_connection_string(cs)
    async with established:
        await established.send_batch([EventData("warm-up")], partition_id="1")
        # Refusing for as long as this test needs (reset_faults ends it), not for a fixed time
        # that a slow machine might let run out before the checks below.
        local_hub.refuse_connections(120)
        no_retry = EventHubProducerClient.from_connection_string(cs, retry_total=0)
        async with no_retry:
            with pytest.raises(ConnectError):
                await no_retry.get_eventhub_properties()
        # Connections made before the outage keep working during it.
        await established.send_batch([EventData("during")], partition_id="1")
        # With the SDK's default retries a new client that was refused gets through once the
        # hub accepts again.
        patient = EventHubProducerClient.from_connection_string(cs)
        async with patient:
            seen = len(caplog.records)
            call = asyncio.create_task(patient.get_eventhub_properties())
            deadline = time.monotonic() + 30
            while not any("Retrying" in r.getMessage() for r in caplog.records[seen:]):
                assert not call.done(), f"got through while refused: {call.result()}"
                assert time.monotonic() < deadline, "the new client was never refused"
                await asyncio.sleep(0.05)
            await asyncio.to_thread(local_hub.reset_faults)
            props = await asyncio.wait_for(call, 60)
        assert props["eventhub_name"] == fresh_hub_name
    assert local_hub.partition_info(fresh_hub_name)["1"]["last_enqueued_sequence_number"] == 1


DELAY_S = 3.0


@pytest.mark.asyncio
async def test_delay_deliveries_holds_events_back(local_hub, fresh_hub_name):
    cs = local_hub.connection_string(fresh_hub_name)
    producer = EventHubProducerClient.from_connection_string(cs)
    async with producer, BackgroundReceiver(cs) as consumer:
        await asyncio.to_thread(local_hub.wait_for_consumers, fresh_hub_name, 1)
        local_hub.delay_deliveries(DELAY_S)
        await producer.send_batch([EventData("slow")], partition_id="0")
        await consumer.wait_for(1, timeout=60)
        local_hub.delay_deliveries(0)
        await producer.send_batch([EventData("fast")], partition_id="0")
        await consumer.wait_for(2, timeout=60)
    lags = [at - e.enqueued_time.timestamp() for e, at in zip(consumer.events, consumer.received_at)]
    assert bodies(consumer.events) == ["slow", "fast"]
    # held back at least DELAY_S (a busy machine only adds to that); once the delay is off, not
    # held back again: no tight bound on how fast a busy machine delivers
    assert lags[0] >= DELAY_S and lags[1] < DELAY_S, lags


@pytest.mark.asyncio
async def test_killed_hub_restarts_on_same_port_with_persisted_events(local_hub_factory, tmp_path):
    hub = local_hub_factory("eh1:2", persist_dir=str(tmp_path / "events"))
    hub.create_hub("extra", 3)
    cs = hub.connection_string("eh1")
    producer = EventHubProducerClient.from_connection_string(cs)
    async with producer:
        await producer.send_batch([EventData(f"k{i}") for i in range(3)], partition_id="0")
    before = hub.partition_info("eh1")
    port = hub.port
    hub.kill()
    hub.start()
    assert hub.port == port
    assert hub.partition_info("eh1") == before
    assert set(hub.stats()["hubs"]) == {"eh1", "extra"}
    async with BackgroundReceiver(cs) as consumer:
        await consumer.wait_for(3)
        # A consumer connected across a restart reconnects and sees what is sent after it.
        hub.stop()
        hub.start()
        async with EventHubProducerClient.from_connection_string(cs) as producer:
            await producer.send_batch([EventData("after-restart")], partition_id="0")
        await consumer.wait_for(4, timeout=30)
    assert bodies(consumer.events) == ["k0", "k1", "k2", "after-restart"]
    assert [e.sequence_number for e in consumer.events] == [0, 1, 2, 3]


def test_in_memory_hub_restart_keeps_hubs_but_not_events(local_hub_factory):
    hub = local_hub_factory("eh1:2")
    hub.create_hub("made-later", 2, consumer_groups=("workers",))
    hub.restart()
    assert hub.stats()["hubs"] == {"eh1": 2, "made-later": 2}


@pytest.mark.asyncio
async def test_azurite_outage_fails_checkpoint_calls_and_keeps_blobs(tmp_path):
    with Azurite(location=str(tmp_path / "blobs")) as storage:
        storage.create_container("checkpoints")
        checkpoint = {"fully_qualified_namespace": "127.0.0.1:1", "eventhub_name": "eh1",
                      "consumer_group": "$Default", "partition_id": "0", "offset": "160", "sequence_number": 2}
        store = BlobCheckpointStore.from_connection_string(storage.connection_string, "checkpoints", retry_total=0)
        async with store:
            await store.update_checkpoint(checkpoint)
            storage.stop()
            with pytest.raises(ServiceRequestError):
                await store.update_checkpoint(dict(checkpoint, offset="999", sequence_number=9))
            storage.start()
            saved = await store.list_checkpoints("127.0.0.1:1", "eh1", "$Default")
    assert [(c["offset"], c["sequence_number"]) for c in saved] == [("160", 2)]


@pytest.mark.asyncio
async def test_unknown_hub_and_consumer_group_are_not_found(local_hub):
    cs = local_hub.connection_string("no-such-hub")
    producer = EventHubProducerClient.from_connection_string(cs, retry_total=0)
    async with producer:
        with pytest.raises(Exception, match="could not be found"):
            await producer.get_eventhub_properties()
    got = await receive_events(local_hub.connection_string("eh1"), "0", consumer_group="nope",
                               stop_on_error=True, timeout=10, client_kwargs={"retry_total": 0})
    assert got.errors and "could not be found" in str(got.errors[0])


@pytest.mark.asyncio
async def test_stall_partition_starves_attached_receivers_until_one_reattaches(local_hub, fresh_hub_name):
    cs = local_hub.connection_string(fresh_hub_name)
    producer = EventHubProducerClient.from_connection_string(cs)
    async with producer, BackgroundReceiver(cs, "0") as stalled, BackgroundReceiver(cs, "1") as other:
        await producer.send_batch([EventData("before")], partition_id="0")
        await stalled.wait_for(1)
        await asyncio.to_thread(local_hub.wait_for_consumers, fresh_hub_name, 2)
        assert local_hub.stall_partition(fresh_hub_name, "0") == 1  # partition 1's receiver is untouched
        await producer.send_batch([EventData("starved")], partition_id="0")
        await producer.send_batch([EventData("served")], partition_id="1")
        await other.wait_for(1)
        # the hub took the event and says so, but the attached receiver gets nothing
        assert local_hub.partition_info(fresh_hub_name)["0"]["last_enqueued_sequence_number"] == 1
        await asyncio.sleep(2.0)
        assert bodies(stalled.events) == ["before"]
        # a receiver attached after the fault is served normally
        fresh = await receive_events(cs, "0", expected=2, timeout=20)
        assert bodies(fresh.events) == ["before", "starved"]
        assert bodies(stalled.events) == ["before"]
        await asyncio.to_thread(local_hub.reset_faults)  # the stalled link is served again
        await stalled.wait_for(2)
    assert bodies(stalled.events) == ["before", "starved"]
    assert bodies(other.events) == ["served"]
