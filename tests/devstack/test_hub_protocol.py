"""The real azure-eventhub async clients against the local hub: properties, routing, positions,
runtime metrics, owner level and authentication."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
import pytest_asyncio
from azure.eventhub import EventData
from azure.eventhub._buffered_producer._partition_resolver import PartitionResolver, generate_hash_code
from azure.eventhub.aio import EventHubProducerClient
from azure.eventhub.exceptions import AuthenticationError, ConnectError, ConnectionLostError, EventHubError
from hypothesis import given, settings
from hypothesis import strategies as st

from devstack.partition_key import partition_hash
from devstack.sdk_helpers import bodies, receive_events, send_events

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


@pytest.mark.asyncio
async def test_hub_and_partition_properties(local_hub, make_hub):
    name = make_hub(8)
    cs = local_hub.connection_string(name)
    before = dt.datetime.now(dt.timezone.utc)
    producer = EventHubProducerClient.from_connection_string(cs)
    async with producer:
        props = await producer.get_eventhub_properties()
        assert props["eventhub_name"] == name
        assert props["partition_ids"] == [str(i) for i in range(8)]
        assert abs((props["created_at"] - before).total_seconds()) < 60
        empty = await producer.get_partition_properties("5")
        assert empty["is_empty"] is True
        assert (empty["last_enqueued_sequence_number"], empty["last_enqueued_offset"]) == (-1, "-1")
        await send_events(cs, ["a", "b", "c"], partition_id="5")
        full = await producer.get_partition_properties("5")
    assert full["is_empty"] is False
    assert full["id"] == "5" and full["beginning_sequence_number"] == 0
    assert full["last_enqueued_sequence_number"] == 2
    assert isinstance(full["last_enqueued_offset"], str) and int(full["last_enqueued_offset"]) > 0
    assert abs((full["last_enqueued_time_utc"] - dt.datetime.now(dt.timezone.utc)).total_seconds()) < 30


@pytest.mark.asyncio
async def test_send_by_partition_id_and_receive_annotations(local_hub, fresh_hub_name):
    cs = local_hub.connection_string(fresh_hub_name)
    event = EventData("with-props")
    event.properties = {"kind": "run", "n": 7}
    await send_events(cs, [event, "two", "three"], partition_id="2")
    got = await receive_events(cs, "2", expected=3)
    assert bodies(got.events) == ["with-props", "two", "three"]
    assert [e.sequence_number for e in got.events] == [0, 1, 2]
    offsets = [e.offset for e in got.events]
    assert all(isinstance(o, str) for o in offsets) and offsets == sorted(offsets, key=int)
    assert got.events[0].properties == {b"kind": b"run", b"n": 7}
    assert all(e.enqueued_time is not None for e in got.events)
    info = local_hub.partition_info(fresh_hub_name)
    assert [info[p]["last_enqueued_sequence_number"] for p in "0123"] == [-1, -1, 2, -1]


@pytest.mark.asyncio
async def test_partition_key_routing_agrees_with_the_sdk_resolver(local_hub, make_hub):
    name = make_hub(8)
    cs = local_hub.connection_string(name)
    keys = ["run-1", "subject/42", "ééé", "a-much-longer-partition-key-that-spans-several-blocks", "x"]
    producer = EventHubProducerClient.from_connection_string(cs)
    async with producer:  # the hub routes these
        for key in keys:
            await producer.send_batch([EventData(f"plain:{key}")], partition_key=key)
    # The buffered producer routes keys itself: both paths must land on the same partition.
    buffered = EventHubProducerClient.from_connection_string(
        cs, buffered_mode=True, on_success=lambda *_: None, on_error=lambda *_: None)
    async with buffered:
        for key in keys:
            await buffered.send_event(EventData(f"buffered:{key}"), partition_key=key)
        await buffered.flush()
    got = await receive_events(cs, None, expected=2 * len(keys), timeout=10)
    resolver = PartitionResolver([str(i) for i in range(8)])
    landed = {}
    for event, context in zip(got.events, got.partition_contexts):
        landed.setdefault(event.body_as_str().split(":", 1)[1], set()).add(context.partition_id)
        assert event.partition_key == event.body_as_str().split(":", 1)[1].encode()
    assert landed == {key: {resolver.get_partition_id_by_partition_key(key)} for key in keys}


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_partition_key_hash_matches_the_sdk_for_any_key(key):
    assert partition_hash(key) == generate_hash_code(key)


@pytest.mark.asyncio
async def test_round_robin_spreads_batches_over_partitions(local_hub, fresh_hub_name):
    cs = local_hub.connection_string(fresh_hub_name)
    producer = EventHubProducerClient.from_connection_string(cs)
    async with producer:
        for i in range(8):
            batch = await producer.create_batch()
            batch.add(EventData(f"rr{i}"))
            await producer.send_batch(batch)
    info = local_hub.partition_info(fresh_hub_name)
    assert sorted(info[p]["last_enqueued_sequence_number"] + 1 for p in info) == [2, 2, 2, 2]


@pytest.mark.asyncio
async def test_large_events_cross_frame_boundaries(local_hub, fresh_hub_name):
    cs = local_hub.connection_string(fresh_hub_name)
    big = "x" * 700_000  # far above both sides' frame sizes
    small = [f"s{i}-" + "y" * 1500 for i in range(300)]  # one batch of many frames
    await send_events(cs, [big], partition_id="1")
    await send_events(cs, small, partition_id="1")
    got = await receive_events(cs, "1", expected=301, timeout=10)
    assert bodies(got.events) == [big] + small


@pytest_asyncio.fixture
async def ten_timed_events(local_hub, fresh_hub_name):
    """Ten events on partition 0, each enqueued at a distinct millisecond."""
    cs = local_hub.connection_string(fresh_hub_name)
    producer = EventHubProducerClient.from_connection_string(cs)
    async with producer:
        for i in range(10):
            batch = await producer.create_batch(partition_id="0")
            batch.add(EventData(f"e{i}"))
            await producer.send_batch(batch)
            await asyncio.sleep(0.005)
    got = await receive_events(cs, "0", expected=10)
    assert bodies(got.events) == [f"e{i}" for i in range(10)]
    return cs, got.events


@pytest.mark.asyncio
async def test_receive_from_offset_sequence_number_and_enqueued_time(ten_timed_events):
    cs, events = ten_timed_events
    anchor = events[4]
    cases = [(position, inclusive) for position in (anchor.offset, anchor.sequence_number, anchor.enqueued_time)
             for inclusive in (False, True)]
    results = await asyncio.gather(*(
        receive_events(cs, "0", starting_position=position, inclusive=inclusive,
                       expected=6 if inclusive else 5, timeout=8)
        for position, inclusive in cases))
    for (position, inclusive), got in zip(cases, results):
        first = 4 if inclusive else 5
        assert bodies(got.events) == [f"e{i}" for i in range(first, 10)], (position, inclusive)


@pytest.mark.asyncio
async def test_receive_from_earliest_and_latest(local_hub, fresh_hub_name):
    cs = local_hub.connection_string(fresh_hub_name)
    await send_events(cs, ["old1", "old2"], partition_id="3")
    earliest = await receive_events(cs, "3", starting_position="-1", expected=2)
    assert bodies(earliest.events) == ["old1", "old2"]

    async def send_when_attached():
        await asyncio.to_thread(local_hub.wait_for_consumers, fresh_hub_name, 1)
        await send_events(cs, ["new1"], partition_id="3")

    sender = asyncio.create_task(send_when_attached())
    latest = await receive_events(cs, "3", starting_position="@latest", expected=1, timeout=8)
    await sender
    assert bodies(latest.events) == ["new1"]


@pytest.mark.asyncio
async def test_last_enqueued_runtime_metrics(local_hub, fresh_hub_name):
    cs = local_hub.connection_string(fresh_hub_name)
    await send_events(cs, ["m0", "m1", "m2"], partition_id="0")
    got = await receive_events(cs, "0", expected=1, track_last_enqueued_event_properties=True)
    last = got.partition_contexts[0].last_enqueued_event_properties
    assert last["sequence_number"] == 2
    assert last["offset"] == local_hub.partition_info(fresh_hub_name)["0"]["last_enqueued_offset"]
    assert last["enqueued_time"] is not None and last["retrieval_time"] is not None


def _is_link_stolen(error: Exception) -> bool:
    return isinstance(error, (ConnectionLostError, ConnectError, EventHubError)) and "link:stolen" in str(error)


@pytest.mark.asyncio
async def test_owner_level_kicks_lower_and_refuses_lower_or_none(local_hub, fresh_hub_name):
    cs = local_hub.connection_string(fresh_hub_name)
    await send_events(cs, ["o1"], partition_id="0")

    low = asyncio.create_task(receive_events(cs, "0", owner_level=1, stop_on_error=True, timeout=15))
    await asyncio.to_thread(local_hub.wait_for_consumers, fresh_hub_name, 1)
    high = asyncio.create_task(receive_events(cs, "0", owner_level=2, expected=2, timeout=15))
    kicked = await low
    assert bodies(kicked.events) == ["o1"]
    assert kicked.errors and _is_link_stolen(kicked.errors[0]), kicked.errors
    assert "higher epoch of '2'" in str(kicked.errors[0])

    # While the owner-level-2 receiver holds the partition: a lower level and a receiver
    # without owner level are both refused, and the owner keeps receiving.
    lower = await receive_events(cs, "0", owner_level=1, stop_on_error=True, timeout=10)
    assert lower.errors and _is_link_stolen(lower.errors[0]) and not lower.events
    plain = await receive_events(cs, "0", stop_on_error=True, timeout=10)
    assert plain.errors and _is_link_stolen(plain.errors[0]) and not plain.events
    assert "non-epoch receiver is not allowed" in str(plain.errors[0])
    await send_events(cs, ["o2"], partition_id="0")
    owner = await high
    assert bodies(owner.events) == ["o1", "o2"] and not owner.errors


@pytest.mark.asyncio
async def test_wrong_sas_key_is_rejected(local_hub):
    cs = local_hub.connection_string("eh1", key="not-the-key")
    producer = EventHubProducerClient.from_connection_string(cs, retry_total=0)
    async with producer:
        with pytest.raises(AuthenticationError):
            await producer.get_eventhub_properties()
        with pytest.raises(AuthenticationError):
            await producer.send_batch([EventData("nope")])
    got = await receive_events(cs, "0", stop_on_error=True, timeout=10, client_kwargs={"retry_total": 0})
    assert got.errors and isinstance(got.errors[0], AuthenticationError)
