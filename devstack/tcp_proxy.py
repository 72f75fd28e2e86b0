"""A TCP proxy for tests: 127.0.0.1:<port> forwarded to a target (Azurite's blob port), that
can be told to cut the path, at once or when a given HTTP request starts.

    with TcpProxy("127.0.0.1", azurite.port) as proxy:
        cs = azurite.connection_string.replace(azurite.blob_endpoint, proxy.url(ACCOUNT))
        proxy.cut_on(rb"^PUT /devstoreaccount1/wh/prod/raw_events/")  # armed
        ...
        proxy.wait_cut(60)   # the first such request was not forwarded; everything was cut
        proxy.resume()

A cut closes every forwarded connection with a TCP reset (both sides) and then, until
`resume()`, treats new connections by its mode:
- "reset" (default): accepted and reset at once. The client sees its request fail with a
  connection reset, as when a gateway drops it; the port stays this proxy's.
- "refuse": the proxy stops listening, so connecting gets ECONNREFUSED; `resume()` listens
  again on the same port.
- "blackhole": accepted, read and never answered, so the client waits for its own timeout;
  `resume()` resets them.

`cut_on(pattern)` cuts when a request line on a client-to-server stream matches (a regex
over bytes), before any byte of that request is forwarded. HTTP/1.1 to Azurite is
plaintext; the proxy follows request boundaries on each connection (keep-alive carries
several requests: headers up to the blank line, then a Content-Length or chunked body), so
only real request lines are matched, never body bytes. Anything that is not HTTP is still
forwarded, just never matched. The server-to-client side is piped as is.

Everything runs on an asyncio loop in one daemon thread of this process; `close()` (or
the context manager) stops it and closes every socket. It is not a child process, so
devstack's process registry (devstack/processes.py) has nothing to record.
"""

from __future__ import annotations

import asyncio
import re
import socket
import struct
import threading
import time
from collections import deque

from .processes import free_port

MODES = ("reset", "refuse", "blackhole")
_HEADER_LIMIT = 1 << 20  # one request's header block, at most
_CHUNK = 1 << 16


class _Conn:
    """One forwarded connection: the client's and the target's streams, and their tasks."""

    def __init__(self, client: asyncio.StreamWriter, server: asyncio.StreamWriter | None) -> None:
        self.client = client
        self.server = server
        self.tasks: list[asyncio.Task] = []

    def abort(self) -> None:
        for writer in (self.client, self.server):
            if writer is not None:
                _reset(writer)
        for task in self.tasks:
            if task is not asyncio.current_task():
                task.cancel()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset (SO_LINGER 0), not a FIN: the peer sees a dropped connection."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    writer.transport.abort()


class TcpProxy:
    def __init__(self, target_host: str, target_port: int, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.target = (target_host, target_port)
        self.host = host
        self.port = port or free_port(host)
        self._lines: deque[str] = deque(maxlen=10_000)  # "PUT /a/b" (no query), oldest first
        self.forwarded = 0  # requests forwarded
        self.cuts = 0
        self.cut_request: str | None = None  # the request line that triggered the last cut
        self.cut_event = threading.Event()  # set by a cut, cleared by resume()
        self._mode: str | None = None  # None: forwarding; else the current cut's mode
        self._trigger: tuple[re.Pattern[bytes], str] | None = None
        self._conns: set[_Conn] = set()
        self._held: set[asyncio.StreamWriter] = set()  # black-holed connections
        self._tasks: set[asyncio.Task] = set()  # every connection's tasks, awaited by close()
        self._server: asyncio.AbstractServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # -- the caller's side (any thread) -------------------------------------------
    def url(self, path: str = "") -> str:
        """http://host:port[/path]: e.g. url("devstoreaccount1") as a BlobEndpoint."""
        return f"http://{self.host}:{self.port}" + (f"/{path.lstrip('/')}" if path else "")

    def start(self) -> TcpProxy:
        if self._thread is not None:
            return self
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"tcp-proxy-{self.port}", daemon=True)
        self._thread.start()
        try:
            self._call(self._listen())
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Stop listening, reset every connection, stop the loop thread. Idempotent."""
        if self._thread is None:
            return
        try:
            self._call(self._shutdown())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()
            self._thread = None
            self._loop = None

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def is_cut(self) -> bool:
        return self._mode is not None

    def cut(self, mode: str = "reset") -> None:
        """Cut now: every connection reset, new ones treated by `mode` until resume()."""
        self._call(self._cut_now(mode, None))

    def cut_on(self, pattern: bytes | str, mode: str = "reset") -> None:
        """Arm: the first request whose request line matches `pattern` (re.search over the
        bytes, e.g. rb"^PUT /acct/container/prefix/raw_events/") is not forwarded, and the
        proxy cuts. Once, then disarmed."""
        _check(mode)
        regex = re.compile(pattern.encode() if isinstance(pattern, str) else pattern)
        self._call(self._arm((regex, mode)))

    def disarm(self) -> None:
        self._call(self._arm(None))

    def seen(self) -> list[str]:
        """The request lines seen so far (method and path, oldest first; the last 10,000)."""
        return self._call(self._seen())

    def wait_cut(self, timeout: float) -> bool:
        return self.cut_event.wait(timeout)

    def resume(self) -> None:
        """Forward again (listening again after a "refuse" cut; black-holed connections reset)."""
        self._call(self._resume())

    def _call(self, coro, timeout: float = 30):
        if self._loop is None:
            coro.close()
            raise RuntimeError("the proxy is not running")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    # -- on the loop ------------------------------------------------------------
    async def _listen(self) -> None:
        deadline = time.monotonic() + 10
        while True:  # after a "refuse" cut the port may linger a moment
            try:
                self._server = await asyncio.start_server(self._accept, self.host, self.port,
                                                          reuse_address=True, limit=_HEADER_LIMIT)
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05)

    async def _stop_listening(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    async def _shutdown(self) -> None:
        self._trigger = None
        await self._stop_listening()
        self._drop_all()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)

    async def _seen(self) -> list[str]:
        return list(self._lines)

    async def _arm(self, trigger) -> None:
        self._trigger = trigger

    async def _cut_now(self, mode: str, request: str | None) -> None:
        _check(mode)
        self._trigger = None
        self._mode = mode
        self.cuts += 1
        self.cut_request = request
        self._drop_all()
        if mode == "refuse":
            await self._stop_listening()
        self.cut_event.set()

    async def _resume(self) -> None:
        self._trigger = None
        for writer in list(self._held):
            _reset(writer)
        self._held.clear()
        was, self._mode = self._mode, None
        self.cut_event.clear()
        if was == "refuse" or self._server is None:
            await self._listen()

    def _drop_all(self) -> None:
        conns, self._conns = self._conns, set()
        for conn in conns:
            conn.abort()
        for writer in list(self._held):
            _reset(writer)
        self._held.clear()

    def _track(self, task: asyncio.Task) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._track(asyncio.current_task())
        if self._mode == "blackhole":
            self._held.add(writer)
            try:
                while await reader.read(_CHUNK):
                    pass
            except (ConnectionError, OSError, asyncio.CancelledError):
                pass
            finally:
                self._held.discard(writer)
                writer.transport.abort()
            return
        if self._mode is not None:
            _reset(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target, limit=_HEADER_LIMIT)
        except OSError:
            _reset(writer)  # the target is down: so is the path through the proxy
            return
        conn = _Conn(writer, up_writer)
        if self._mode is not None:  # cut while we dialled
            conn.abort()
            return
        self._conns.add(conn)
        conn.tasks = [asyncio.current_task(), asyncio.create_task(self._pipe(up_reader, writer))]
        self._track(conn.tasks[1])
        try:
            await self._requests(reader, up_writer, conn)
        except (ConnectionError, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass
        except asyncio.CancelledError:
            pass
        finally:
            if conn in self._conns:  # ended by a side, not by a cut: close both quietly
                self._conns.discard(conn)
                for w in (writer, up_writer):
                    w.transport.abort()
                conn.tasks[1].cancel()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(_CHUNK):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError, asyncio.CancelledError):
            pass
        finally:
            writer.transport.abort()  # the target hung up: so does the client's side

    async def _requests(self, reader: asyncio.StreamReader, up: asyncio.StreamWriter, conn: _Conn) -> None:
        """Forward requests one by one, matching each request line against the trigger."""
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError as exc:
                if exc.partial:
                    up.write(exc.partial)
                    await up.drain()
                return
            line = head.split(b"\r\n", 1)[0]
            text = line.decode("latin-1")
            self._lines.append(text.rsplit(" ", 1)[0].split("?", 1)[0])  # "PUT /path", no query or version
            trigger = self._trigger
            if trigger is not None and trigger[0].search(line):
                await self._cut_now(trigger[1], text)  # nothing of this request was forwarded
                return
            if self._mode is not None:
                return
            up.write(head)
            length, chunked = _body_framing(head)
            if chunked:
                await self._chunks(reader, up)
            else:
                await _copy(reader, up, length)
            await up.drain()
            self.forwarded += 1

    async def _chunks(self, reader: asyncio.StreamReader, up: asyncio.StreamWriter) -> None:
        while True:
            size_line = await reader.readuntil(b"\r\n")
            up.write(size_line)
            size = int(size_line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                while (trailer := await reader.readuntil(b"\r\n")) != b"\r\n":
                    up.write(trailer)
                up.write(b"\r\n")
                return
            await _copy(reader, up, size + 2)  # the chunk and its CRLF


def _check(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"mode {mode!r}: one of {', '.join(MODES)}")


def _body_framing(head: bytes) -> tuple[int, bool]:
    """(Content-Length, chunked) of a request's header block."""
    length, chunked = 0, False
    for raw in head.split(b"\r\n")[1:]:
        name, sep, value = raw.partition(b":")
        if not sep:
            continue
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value.strip())
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    return length, chunked


async def _copy(reader: asyncio.StreamReader, up: asyncio.StreamWriter, count: int) -> None:
    while count > 0:
        data = await reader.read(min(count, _CHUNK))
        if not data:
            raise asyncio.IncompleteReadError(b"", count)
        up.write(data)
        count -= len(data)
        await up.drain()
