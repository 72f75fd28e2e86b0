"""A session: delivery framing, link attach (routing by address), refusals and detach."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlparse

from . import frames as F
from .amqp_types import Described
from .links import (
    MAX_MESSAGE_SIZE, ConsumerLink, Link, NodeRequestLink, NodeResponseLink, ProducerLink,
)
from .sasl_cbs import token_covers
from .store import parse_selector

if TYPE_CHECKING:
    from .connection import AmqpConnection

SESSION_WINDOW = 0x7FFFFFFF  # session flow control never binds: link credit does
SELECTOR_FILTER_NAMES = ("apache.org:selector-filter:string", 0x0000468C00000004)
NODES = ("$cbs", "$management")


def _address(terminus) -> str:
    if isinstance(terminus, Described) and terminus.value:
        return str(terminus.value[0] or "")
    return ""


def _entity_parts(address: str) -> list[str]:
    path = urlparse(address).path if "://" in address else address
    return [p for p in path.split("/") if p]


class Session:
    def __init__(self, conn: AmqpConnection, channel: int, next_incoming_id: int):
        self.conn = conn
        self.channel = channel
        self.next_incoming_id = next_incoming_id
        self.next_outgoing_id = 0
        self.window = SESSION_WINDOW
        self._next_delivery_id = 0
        self.links: dict[int, Link] = {}  # by the client's handle
        self._last_handle = 0
        self._responders: dict[str, NodeResponseLink] = {}

    def send(self, data: bytes) -> None:
        self.conn.write(data)

    def delivery_frames(self, handle: int, message: bytes) -> bytes:
        """A pre-settled delivery, split across frames if it exceeds the client's frame size."""
        delivery_id = self._next_delivery_id
        self._next_delivery_id = (delivery_id + 1) & 0xFFFFFFFF
        tag = delivery_id.to_bytes(4, "big")
        last = F.transfer_performative(handle, delivery_id, tag, more=False)
        room = self.conn.peer_max_frame_size - 8 - len(last)
        if len(message) <= room:
            self.next_outgoing_id += 1
            return F.frame(self.channel, last, message)
        more = F.transfer_performative(handle, delivery_id, tag, more=True)
        chunks = [message[i : i + room] for i in range(0, len(message), room)]
        self.next_outgoing_id += len(chunks)
        out = [F.frame(self.channel, more, chunk) for chunk in chunks[:-1]]
        out.append(F.frame(self.channel, last, chunks[-1]))
        return b"".join(out)

    def send_delivery(self, handle: int, message: bytes) -> None:
        self.send(self.delivery_frames(handle, message))

    def response_link(self, node: str) -> NodeResponseLink | None:
        return self._responders.get(node)

    def _new_handle(self) -> int:
        self._last_handle += 1
        return self._last_handle

    # ------------------------------------------------------------ attach / detach

    def on_attach(self, perf: F.Performative) -> None:
        name, remote_handle, client_is_receiver = str(perf.fields[0]), perf.fields[1], bool(perf.fields[2])
        handle = self._new_handle()
        if client_is_receiver:
            address = _address(perf.fields[5])
            if address in NODES:
                link = NodeResponseLink(self, name, remote_handle, handle)
                self._responders[address] = link
                self._accept(link, perf, F.ROLE_SENDER, initial_delivery_count=0)
                return
            self._attach_consumer(perf, name, remote_handle, handle, address)
            return
        address = _address(perf.fields[6])
        if address in NODES:
            link = NodeRequestLink(self, name, remote_handle, handle, perf.fields[9], address)
            self._accept(link, perf, F.ROLE_RECEIVER)
            link.grant_credit()
            return
        parts = _entity_parts(address)
        hub = self.conn.server.store.get(parts[0]) if parts else None
        partition_id = None
        if len(parts) == 3 and parts[1].lower() == "partitions":
            partition_id = parts[2]
        if hub is None or len(parts) not in (1, 3) or (partition_id is not None and partition_id not in hub.partitions):
            self._refuse(perf, handle, F.ROLE_RECEIVER, "amqp:not-found",
                         f"The messaging entity '{address}' could not be found.")
            return
        if not token_covers(self.conn.tokens, hub.name):
            self._refuse(perf, handle, F.ROLE_RECEIVER, "amqp:unauthorized-access",
                         "Unauthorized access. 'Send' claim(s) are required to perform this operation.")
            return
        link = ProducerLink(self, name, remote_handle, handle, perf.fields[9], hub, partition_id)
        self._accept(link, perf, F.ROLE_RECEIVER, max_message_size=MAX_MESSAGE_SIZE)
        link.grant_credit()

    def _attach_consumer(self, perf: F.Performative, name: str, remote_handle: int, handle: int, address: str) -> None:
        parts = _entity_parts(address)
        server = self.conn.server
        hub = server.store.get(parts[0]) if parts else None
        ok_shape = len(parts) == 5 and parts[1].lower() == "consumergroups" and parts[3].lower() == "partitions"
        if hub is None or not ok_shape or parts[4] not in hub.partitions or not hub.has_consumer_group(parts[2]):
            self._refuse(perf, handle, F.ROLE_SENDER, "amqp:not-found",
                         f"The messaging entity '{address}' could not be found.")
            return
        if not token_covers(self.conn.tokens, hub.name):
            self._refuse(perf, handle, F.ROLE_SENDER, "amqp:unauthorized-access",
                         "Unauthorized access. 'Listen' claim(s) are required to perform this operation.")
            return
        partition = hub.partitions[parts[4]]
        start = 0
        filters = perf.fields[5].value[7] if len(perf.fields[5].value) > 7 else None
        for key, value in (filters or {}).items():
            if key in SELECTOR_FILTER_NAMES and isinstance(value, Described):
                try:
                    start = partition.start_index(*parse_selector(str(value.value)))
                except ValueError as exc:
                    self._refuse(perf, handle, F.ROLE_SENDER, "amqp:invalid-field", str(exc))
                    return
        props = perf.fields[13] or {}
        epoch = props.get("com.microsoft:epoch")
        capabilities = perf.fields[12] or []
        capabilities = [capabilities] if isinstance(capabilities, str) else list(capabilities)
        metrics = "com.microsoft:enable-receiver-runtime-metric" in capabilities
        owner_key = (hub.name.lower(), parts[2].lower(), partition.id)
        link = ConsumerLink(self, name, remote_handle, handle, partition=partition, owner_key=owner_key,
                            start=start, epoch=epoch, runtime_metrics=metrics)
        refusal = server.owners.admit(owner_key, link)
        if refusal is not None:
            self._refuse(perf, handle, F.ROLE_SENDER, *refusal)
            return
        offered = ["com.microsoft:enable-receiver-runtime-metric"] if metrics else None
        self._accept(link, perf, F.ROLE_SENDER, initial_delivery_count=0, offered_capabilities=offered)
        link.start()

    def _accept(self, link: Link, perf: F.Performative, role: bool, **extra) -> None:
        self.links[link.remote_handle] = link
        self.send(F.attach_frame(self.channel, link.name, link.handle, role, perf.spans[5], perf.spans[6],
                                 properties=perf.spans[13], **extra))

    def _refuse(self, perf: F.Performative, handle: int, role: bool, condition: str, description: str) -> None:
        """Attach then detach at once with the error, as the service refuses a link."""
        source = perf.spans[5] if perf.spans[5] != F.NULL else F.source_terminus("")
        target = perf.spans[6] if perf.spans[6] != F.NULL else F.target_terminus("")
        self.send(F.attach_frame(self.channel, str(perf.fields[0]), handle, role, source, target,
                                 initial_delivery_count=0 if role == F.ROLE_SENDER else None))
        refused = Link(self, str(perf.fields[0]), perf.fields[1], handle)
        refused.closed = True
        self.links[perf.fields[1]] = refused
        self.send(F.detach_frame(self.channel, handle, True, F.enc_error(condition, description, {})))

    def detach_link(self, link: Link, error: bytes) -> None:
        """Hub-initiated detach; the client's answering detach is then just consumed."""
        if link.closed:
            return
        link.on_detached()
        self.send(F.detach_frame(self.channel, link.handle, True, error))

    def on_detach(self, perf: F.Performative) -> None:
        link = self.links.pop(perf.fields[0], None)
        if link is None or link.closed:
            return
        link.on_detached()
        self._responders = {node: r for node, r in self._responders.items() if r is not link}
        self.send(F.detach_frame(self.channel, link.handle, bool(perf.fields[1])))

    def on_end(self) -> None:
        for link in self.links.values():
            if not link.closed:
                link.on_detached()
        self.links.clear()
