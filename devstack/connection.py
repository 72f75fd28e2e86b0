"""One client connection: protocol headers, SASL, framing and dispatch to sessions."""

from __future__ import annotations

import asyncio
import socket
import time
import traceback
from typing import TYPE_CHECKING

from . import frames as F
from .amqp_types import AmqpDecodeError
from .links import ConsumerLink
from .session import SESSION_WINDOW, Session

if TYPE_CHECKING:
    from .server import HubServer

MAX_FRAME_SIZE = 256 * 1024  # what the hub accepts; producers split big batches to this


class AmqpConnection(asyncio.Protocol):
    def __init__(self, server: HubServer):
        self.server = server
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.tokens: list = []
        self.sessions: dict[int, Session] = {}
        self.peer_max_frame_size = 512
        self.heartbeat_interval: float | None = None
        self.last_write = time.monotonic()
        self.paused = False
        self._buf = bytearray()
        self._phase = "header"  # header -> sasl -> header -> amqp
        self._sasl_done = False

    # ------------------------------------------------------------ transport plumbing

    def connection_made(self, transport) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.connections.add(self)

    def connection_lost(self, exc) -> None:
        self.server.connections.discard(self)
        for session in self.sessions.values():
            session.on_end()
        self.sessions.clear()

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self.wake_consumers()

    def wake_consumers(self) -> None:
        for session in self.sessions.values():
            for link in session.links.values():
                if isinstance(link, ConsumerLink):
                    link.wake()

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)
            self.last_write = time.monotonic()

    def fail(self, condition: str, description: str) -> None:
        self.write(F.close_frame(F.enc_error(condition, description, {})))
        if self.transport is not None:
            self.transport.close()

    def drop(self, graceful: bool) -> None:
        """Fault injection: close with amqp:connection:forced, or cut the TCP stream."""
        if self.transport is None:
            return
        if graceful:
            self.fail("amqp:connection:forced", "The connection was closed by the local hub (fault injection).")
        else:
            self.transport.abort()

    # ------------------------------------------------------------ framing

    def data_received(self, data: bytes) -> None:
        self._buf += data
        try:
            consumed = self._process(self._buf)
        except (AmqpDecodeError, IndexError, KeyError, TypeError, ValueError) as exc:
            self._buf.clear()
            self.fail("amqp:decode-error", f"The local hub could not process a frame: {exc!r}")
            return
        except Exception as exc:  # a hub bug: keep serving others, leave a trace in the hub log
            traceback.print_exc()
            self._buf.clear()
            self.fail("amqp:internal-error", f"Local hub error: {exc!r}")
            return
        if consumed:
            del self._buf[:consumed]

    def _process(self, buf: bytearray) -> int:
        pos = 0
        while True:
            if self._phase == "header":
                if len(buf) - pos < 8:
                    return pos
                header = bytes(buf[pos : pos + 8])
                pos += 8
                if header == F.SASL_HEADER and not self._sasl_done:
                    self.write(F.SASL_HEADER + F.sasl_mechanisms(["ANONYMOUS"]))
                    self._phase = "sasl"
                elif header == F.AMQP_HEADER:
                    self.write(F.AMQP_HEADER)
                    self._phase = "amqp"
                else:
                    self.write(F.SASL_HEADER)
                    self.transport.close()
                    return len(buf)
                continue
            if len(buf) - pos < 8:
                return pos
            size, doff, frame_type, channel = F.FRAME_HEADER.unpack_from(buf, pos)
            if size > MAX_FRAME_SIZE or size < 8:
                raise ValueError(f"frame size {size} outside 8..{MAX_FRAME_SIZE}")
            if len(buf) - pos < size:
                return pos
            body = bytes(buf[pos + doff * 4 : pos + size])
            pos += size
            if not body:
                continue  # heartbeat
            if self._phase == "sasl":
                perf = F.decode_performative(body)
                if perf.code == F.SASL_INIT:
                    self.write(F.sasl_outcome(0))  # ANONYMOUS: CBS does the real auth
                    self._phase = "header"
                    self._sasl_done = True
                continue
            self._dispatch(channel, F.decode_performative(body, keep_spans=body[2] == F.ATTACH))

    def _dispatch(self, channel: int, perf: F.Performative) -> None:
        code = perf.code
        if code == F.TRANSFER:
            session = self.sessions[channel]
            session.next_incoming_id += 1
            link = session.links[perf.fields[0]]
            if not link.closed:  # else: sent before the client saw the hub refuse the link
                link.on_transfer(perf)
        elif code == F.FLOW:
            handle = perf.fields[4]
            if handle is not None:
                link = self.sessions[channel].links.get(handle)
                if link is not None and not link.closed:
                    link.on_flow(perf)
        elif code == F.DISPOSITION:
            pass  # the hub pre-settles everything it sends
        elif code == F.ATTACH:
            self.sessions[channel].on_attach(perf)
        elif code == F.DETACH:
            self.sessions[channel].on_detach(perf)
        elif code == F.BEGIN:
            self.sessions[channel] = Session(self, channel, perf.fields[1] or 0)
            self.write(F.begin_frame(channel, channel, 0, SESSION_WINDOW, 65535))
        elif code == F.END:
            session = self.sessions.pop(channel, None)
            if session is not None:
                session.on_end()
                self.write(F.end_frame(channel))
        elif code == F.OPEN:
            self.peer_max_frame_size = perf.fields[2] or 0xFFFFFFFF
            if perf.fields[4]:
                self.heartbeat_interval = perf.fields[4] / 2000
            self.write(F.open_frame("amlwh-local-hub", MAX_FRAME_SIZE, 65535, None))
        elif code == F.CLOSE:
            self.write(F.close_frame())
            self.transport.close()
        else:
            raise ValueError(f"unexpected performative 0x{code:02x}")
