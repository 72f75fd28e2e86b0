"""Small helpers around the real azure-eventhub async clients, for tests against the local hub."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from azure.eventhub import EventData
from azure.eventhub.aio import EventHubConsumerClient, EventHubProducerClient


async def send_events(connection_string: str, bodies: list[Any], *, partition_id: str | None = None,
                      partition_key: str | None = None) -> None:
    """Send bodies in as few batches as fit, to one partition id, key, or round robin."""
    producer = EventHubProducerClient.from_connection_string(connection_string)
    async with producer:
        await send_batched(producer, bodies, partition_id=partition_id, partition_key=partition_key)


async def send_batched(producer: EventHubProducerClient, bodies: list[Any], *,
                       partition_id: str | None = None, partition_key: str | None = None) -> None:
    """Send bodies (bytes or EventData) through an open producer, as few batches as fit."""
    batch = await producer.create_batch(partition_id=partition_id, partition_key=partition_key)
    for body in bodies:
        event = body if isinstance(body, EventData) else EventData(body)
        try:
            batch.add(event)
        except ValueError:  # batch full
            await producer.send_batch(batch)
            batch = await producer.create_batch(partition_id=partition_id, partition_key=partition_key)
            batch.add(event)
    if len(batch):
        await producer.send_batch(batch)


@dataclass
class Received:
    events: list[EventData] = field(default_factory=list)
    errors: list[Exception] = field(default_factory=list)
    partition_contexts: list[Any] = field(default_factory=list)


async def receive_events(connection_string: str, partition_id: str | None = "0", *,
                         starting_position: Any = "-1", inclusive: bool = False, expected: int | None = None,
                         timeout: float = 5.0, consumer_group: str = "$Default", stop_on_error: bool = False,
                         client_kwargs: dict[str, Any] | None = None, **receive_kwargs: Any) -> Received:
    """Receive until `expected` events arrived (or an error, with stop_on_error) or `timeout`."""
    # receive() only returns one load-balancing interval after close(): keep it short.
    client_kwargs = {"load_balancing_interval": 0.5, **(client_kwargs or {})}
    client = EventHubConsumerClient.from_connection_string(
        connection_string, consumer_group=consumer_group, **client_kwargs)
    out = Received()
    done = asyncio.Event()

    async def on_event(context, event):
        if event is not None:
            out.events.append(event)
            out.partition_contexts.append(context)
            if expected is not None and len(out.events) >= expected:
                done.set()

    async def on_error(context, error):
        out.errors.append(error)
        if stop_on_error:
            done.set()

    async with client:
        task = asyncio.create_task(client.receive(
            on_event, partition_id=partition_id, starting_position=starting_position,
            starting_position_inclusive=inclusive, on_error=on_error, **receive_kwargs))
        try:
            await asyncio.wait_for(done.wait(), timeout)
        except asyncio.TimeoutError:
            pass
    try:
        await asyncio.wait_for(task, 5)
    except asyncio.TimeoutError:
        pass  # wait_for cancelled it; the client is closed already
    return out


def bodies(events: list[EventData]) -> list[str]:
    return [e.body_as_str() for e in events]


class BackgroundReceiver:
    """`async with BackgroundReceiver(cs) as r:` receives one partition from the earliest event in
    the background; `await r.wait_for(n)` until n events arrived."""

    def __init__(self, cs: str, partition_id: str = "0"):
        self.client = EventHubConsumerClient.from_connection_string(
            cs, consumer_group="$Default", load_balancing_interval=0.5)
        self.partition_id = partition_id
        self.events: list[EventData] = []
        self.received_at: list[float] = []
        self.errors: list[Exception] = []
        self._task: asyncio.Task | None = None

    async def __aenter__(self):
        async def on_event(_, event):
            if event is not None:
                self.events.append(event)
                self.received_at.append(time.time())

        async def on_error(_, error):
            self.errors.append(error)

        self._task = asyncio.create_task(self.client.receive(
            on_event, on_error=on_error, partition_id=self.partition_id, starting_position="-1"))
        return self

    async def wait_for(self, count: int, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while len(self.events) < count:
            assert time.monotonic() < deadline, f"only {len(self.events)} of {count} events arrived"
            await asyncio.sleep(0.05)

    async def __aexit__(self, *exc):
        await self.client.close()
        try:
            await asyncio.wait_for(self._task, 5)
        except asyncio.TimeoutError:
            pass
