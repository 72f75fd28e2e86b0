"""Fault injection: what a client sees when the real service misbehaves.

- drop_all_connections: every open connection is cut (TCP abort, as on a gateway failover), or
  closed with amqp:connection:forced when graceful. The SDK reconnects by itself.
- refuse_connections(seconds): the hub stops listening, so new connections get ECONNREFUSED
  (the SDK raises ConnectError once its retries are spent); existing ones keep working.
- delay_deliveries(seconds): events reach consumers only once they are `seconds` old
  (a lagging service); sends are unaffected.
- stall_partition(hub, partition): the receivers attached to that partition now get nothing
  more, while sends and the management replies (last enqueued sequence number, offset, time)
  go on as usual: a service that silently stopped serving a link. A receiver attached later
  is served normally, so a client recovers by re-attaching.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from .links import ConsumerLink

if TYPE_CHECKING:
    from .server import HubServer


class FaultInjector:
    def __init__(self, server: HubServer):
        self._server = server
        self._delay_ms = 0
        self._reopen: asyncio.TimerHandle | None = None
        self._stalled: list[ConsumerLink] = []

    def delivery_delay_ms(self) -> int:
        return self._delay_ms

    def delay_deliveries(self, seconds: float) -> None:
        self._delay_ms = max(0, int(seconds * 1000))
        self._wake_consumers()

    def stall_partition(self, hub: str, partition: str) -> int:
        """Stop serving the receiver links attached to `hub`'s `partition` now; returns how
        many there were."""
        links = [link for conn in list(self._server.connections) for session in list(conn.sessions.values())
                 for link in list(session.links.values())
                 if isinstance(link, ConsumerLink) and not link.closed
                 and link.partition.hub_name.lower() == hub.lower() and link.partition.id == str(partition)]
        for link in links:
            link.stalled = True
        self._stalled += links
        return len(links)

    def drop_all_connections(self, graceful: bool = False) -> int:
        victims = list(self._server.connections)
        for conn in victims:
            conn.drop(graceful)
        return len(victims)

    async def refuse_connections(self, seconds: float) -> None:
        if self._reopen is not None:
            self._reopen.cancel()
        await self._server.stop_listening()
        loop = asyncio.get_running_loop()
        self._reopen = loop.call_later(seconds, lambda: loop.create_task(self._accept_again()))

    async def _accept_again(self) -> None:
        self._reopen = None
        await self._server.start_listening()

    async def reset(self) -> None:
        self._delay_ms = 0
        stalled, self._stalled = self._stalled, []
        for link in stalled:
            link.stalled = False
        self._wake_consumers()
        if self._reopen is not None:
            self._reopen.cancel()
            await self._accept_again()

    def _wake_consumers(self) -> None:
        for conn in list(self._server.connections):
            conn.wake_consumers()
