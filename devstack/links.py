"""Links of one session: request/response nodes ($cbs, $management), producers and consumers."""

from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING

from . import frames as F
from .messages import parse_transfer, runtime_metrics_section
from .sasl_cbs import decode_request, handle_management, handle_put_token
from .store import Hub, Partition

if TYPE_CHECKING:
    from .connection import Session

PRODUCER_CREDIT = 5000  # the SDK ignores credit anyway; never make it wait
MAX_MESSAGE_SIZE = 1024 * 1024  # announced on producer attach: the SDK's batch limit
PUMP_CHUNK = 300  # deliveries per event-loop turn per link, so one link cannot starve others


class Link:
    def __init__(self, session: Session, name: str, remote_handle: int, handle: int):
        self.session = session
        self.name = name
        self.remote_handle = remote_handle
        self.handle = handle
        self.closed = False

    def on_flow(self, perf: F.Performative) -> None:
        pass

    def on_transfer(self, perf: F.Performative) -> None:
        self.session.conn.fail("amqp:not-allowed", "Transfer on a link the hub sends on.")

    def on_detached(self) -> None:
        """The link is gone (detached by either side, or its connection dropped)."""
        self.closed = True


class IncomingLink(Link):
    """Client -> hub: reassembles multi-frame deliveries, settles them, keeps credit topped up."""

    def __init__(self, session: Session, name: str, remote_handle: int, handle: int, initial_count: int):
        super().__init__(session, name, remote_handle, handle)
        self.delivery_count = initial_count or 0
        self.credit = 0
        self._parts: list[bytes] = []
        self._first: F.Performative | None = None

    def grant_credit(self) -> None:
        self.credit = PRODUCER_CREDIT
        s = self.session
        s.send(F.flow_frame(s.channel, s.next_incoming_id, s.window, s.next_outgoing_id,
                            self.handle, self.delivery_count, self.credit))

    def on_transfer(self, perf: F.Performative) -> None:
        if self._first is None:
            self._first = perf
        self._parts.append(perf.payload)
        if perf.fields[9]:  # aborted: drop what was received so far
            self._first, self._parts = None, []
            return
        if perf.fields[5]:  # more frames follow
            return
        first, payload = self._first, b"".join(self._parts)
        self._first, self._parts = None, []
        self.delivery_count += 1
        self.credit -= 1
        state = self.on_message(payload, first.fields[3] or 0)
        if not first.fields[4] and first.fields[1] is not None:  # unsettled: tell the outcome
            s = self.session
            s.send(F.disposition_frame(s.channel, first.fields[1], first.fields[1], state))
        if self.credit < PRODUCER_CREDIT // 2:
            self.grant_credit()

    def on_message(self, payload: bytes, message_format: int) -> bytes:
        raise NotImplementedError


class NodeResponseLink(Link):
    """Hub -> client replies of $cbs / $management, sent when the client has granted credit."""

    def __init__(self, session: Session, name: str, remote_handle: int, handle: int):
        super().__init__(session, name, remote_handle, handle)
        self.credit = 0
        self.delivery_count = 0
        self._pending: deque[bytes] = deque()

    def on_flow(self, perf: F.Performative) -> None:
        if perf.fields[6] is not None:
            self.credit = (perf.fields[5] or 0) + perf.fields[6] - self.delivery_count
        self._flush()

    def reply(self, message: bytes) -> None:
        self._pending.append(message)
        self._flush()

    def _flush(self) -> None:
        while self._pending and self.credit > 0 and not self.closed:
            self.session.send_delivery(self.handle, self._pending.popleft())
            self.credit -= 1
            self.delivery_count += 1


class NodeRequestLink(IncomingLink):
    def __init__(self, session: Session, name: str, remote_handle: int, handle: int,
                 initial_count: int, node: str):
        super().__init__(session, name, remote_handle, handle, initial_count)
        self.node = node

    def on_message(self, payload: bytes, message_format: int) -> bytes:
        conn = self.session.conn
        request = decode_request(payload)
        if self.node == "$cbs":
            response = handle_put_token(request, conn.server.validator, conn.tokens)
        else:
            response = handle_management(request, conn.server.store, conn.server.validator)
        replies = self.session.response_link(self.node)
        if replies is None:
            return F.rejected_state("amqp:precondition-failed", f"No reply link attached for {self.node}.")
        replies.reply(response)
        return F.ACCEPTED_STATE


class ProducerLink(IncomingLink):
    def __init__(self, session: Session, name: str, remote_handle: int, handle: int,
                 initial_count: int, hub: Hub, partition_id: str | None):
        super().__init__(session, name, remote_handle, handle, initial_count)
        self.hub = hub
        self.partition_id = partition_id

    def on_message(self, payload: bytes, message_format: int) -> bytes:
        if len(payload) > MAX_MESSAGE_SIZE:
            return F.rejected_state("amqp:link:message-size-exceeded",
                                    f"The received message (size {len(payload)}) exceeds the limit "
                                    f"({MAX_MESSAGE_SIZE}) currently allowed on the link.")
        try:
            events, key = parse_transfer(payload, message_format)
        except (ValueError, IndexError) as exc:
            return F.rejected_state("amqp:decode-error", f"The message could not be decoded: {exc}")
        if events:
            self.hub.route(self.partition_id, key).append(events)
        return F.ACCEPTED_STATE


class ConsumerLink(Link):
    """Hub -> client event stream from one partition, pre-settled, paced by the client's credit."""

    def __init__(self, session: Session, name: str, remote_handle: int, handle: int, *,
                 partition: Partition, owner_key: tuple[str, str, str], start: int,
                 epoch: int | None, runtime_metrics: bool):
        super().__init__(session, name, remote_handle, handle)
        self.partition = partition
        self.owner_key = owner_key
        self.cursor = start
        self.epoch = epoch
        self.runtime_metrics = runtime_metrics
        self.credit = 0
        self.delivery_count = 0
        self._scheduled = False
        self._timer = None  # pending call_later while deliveries are held back by a delay
        self.stalled = False  # faults.stall_partition: this link gets nothing more

    def start(self) -> None:
        self.partition.listeners.add(self.wake)

    def on_flow(self, perf: F.Performative) -> None:
        if perf.fields[6] is not None:
            sender_count = perf.fields[5] if perf.fields[5] is not None else self.delivery_count
            self.credit = sender_count + perf.fields[6] - self.delivery_count
        self.wake()

    def wake(self) -> None:
        if self._timer is not None:  # re-evaluate now: the delay may have been lifted
            self._timer.cancel()
            self._timer = None
            self._scheduled = False
        if not self._scheduled and not self.closed:
            self._scheduled = True
            self.session.conn.loop.call_soon(self._pump)

    def _pump(self) -> None:
        self._scheduled = False
        self._timer = None
        conn = self.session.conn
        if self.closed or conn.paused or self.credit <= 0 or self.stalled:
            return  # resumed by a flow, new events, the transport draining, or reset_faults
        part = self.partition
        end = min(len(part), self.cursor + min(self.credit, PUMP_CHUNK))
        delay_ms = conn.server.faults.delivery_delay_ms()
        now_ms = int(time.time() * 1000)
        if delay_ms:
            # Deliver only events at least `delay` old; come back when the next one is due.
            ready = self.cursor
            while ready < end and part.times_ms[ready] + delay_ms <= now_ms:
                ready += 1
            if ready < len(part) and ready == self.cursor:
                due = (part.times_ms[ready] + delay_ms - now_ms) / 1000
                self._scheduled = True
                self._timer = conn.loop.call_later(max(due, 0.005), self._pump)
                return
            end = ready
        if end <= self.cursor:
            return
        metrics = runtime_metrics_section(part, now_ms) if self.runtime_metrics else b""
        out = []
        for i in range(self.cursor, end):
            message = part.prefixes[i] + metrics + part.tails[i] if metrics else part.prefixes[i] + part.tails[i]
            out.append(self.session.delivery_frames(self.handle, message))
        self.session.send(b"".join(out))
        sent = end - self.cursor
        self.cursor = end
        self.credit -= sent
        self.delivery_count += sent
        if self.credit > 0 and self.cursor < len(part):
            self.wake()

    def kick(self, condition: str, description: str) -> None:
        """Detach this receiver with an error (owner level taken over)."""
        self.session.detach_link(self, F.enc_error(condition, description, {}))

    def on_detached(self) -> None:
        super().on_detached()
        self.partition.listeners.discard(self.wake)
        self.session.conn.server.owners.release(self.owner_key, self)
