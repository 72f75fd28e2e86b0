"""The local hub process: AMQP listener, control port, and the command line that starts it.

    python -m devstack.server --hubs eh1:4 --ready-file F [--port P] [--control-port C]
                                 [--persist-dir DIR] [--tls-cert PEM --tls-key PEM [--tls-port T]]

With --tls-cert and --tls-key it also listens for AMQP over TLS (what the SDK dials for a
fully qualified namespace with a token credential) on a second port; the plain port serves
connection strings with UseDevelopmentEmulator=true as before. Fault injection (refused
connections) acts on the plain port only.

Once the ports listen it writes {"port", "control_port", "pid"} (and "tls_port") as JSON to
the ready file.
The control port speaks one JSON object per line: {"op": ..., "args": {...}} and answers
{"ok": true, "result": ...} or {"ok": false, "error": ...}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import ssl
import time

from .connection import AmqpConnection
from .faults import FaultInjector
from .links import ConsumerLink
from .owners import OwnerRegistry
from .sasl_cbs import SasValidator
from .store import EventStore

DEFAULT_KEY_NAME = "RootManageSharedAccessKey"
DEFAULT_KEY = "SAS_KEY_VALUE"  # the Event Hubs emulator's well-known development key


def parse_hub_specs(text: str) -> list[tuple[str, int, tuple[str, ...]]]:
    """"eh1:4,eh2:8:cg1+cg2" -> [("eh1", 4, ()), ("eh2", 8, ("cg1", "cg2"))]; $Default is implied."""
    specs = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, rest = item.partition(":")
        count, _, groups = rest.partition(":")
        specs.append((name, int(count or 4), tuple(filter(None, groups.split("+")))))
    return specs


def format_hub_specs(specs: list[tuple[str, int, tuple[str, ...]]]) -> str:
    return ",".join(f"{n}:{p}" + (":" + "+".join(g) if g else "") for n, p, g in specs)


class HubServer:
    def __init__(self, store: EventStore, validator: SasValidator, host: str):
        self.store = store
        self.validator = validator
        self.host = host
        self.port = 0
        self.connections: set[AmqpConnection] = set()
        self.owners = OwnerRegistry()
        self.faults = FaultInjector(self)
        self._listener: asyncio.Server | None = None

    async def start_listening(self) -> None:
        if self._listener is not None:
            return
        loop = asyncio.get_running_loop()
        for attempt in range(50):
            try:
                self._listener = await loop.create_server(
                    lambda: AmqpConnection(self), self.host, self.port, reuse_address=True)
                break
            except OSError:
                if not self.port or attempt == 49:
                    raise
                await asyncio.sleep(0.1)  # the same port again after a restart: wait for it
        self.port = self._listener.sockets[0].getsockname()[1]

    async def stop_listening(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    async def send_heartbeats(self) -> None:
        """Empty frames for clients that asked for an idle timeout."""
        from .frames import EMPTY_FRAME
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for conn in list(self.connections):
                if conn.heartbeat_interval and now - conn.last_write >= conn.heartbeat_interval:
                    conn.write(EMPTY_FRAME)

    async def control(self, op: str, args: dict):
        if op == "ping":
            return {"port": self.port, "pid": os.getpid()}
        if op == "drop_all_connections":
            return self.faults.drop_all_connections(bool(args.get("graceful", False)))
        if op == "refuse_connections":
            return await self.faults.refuse_connections(float(args["seconds"]))
        if op == "delay_deliveries":
            return self.faults.delay_deliveries(float(args["seconds"]))
        if op == "stall_partition":
            return self.faults.stall_partition(str(args["hub"]), str(args["partition"]))
        if op == "reset_faults":
            return await self.faults.reset()
        if op == "create_hub":
            hub = self.store.create_hub(args["name"], int(args["partitions"]), args.get("consumer_groups") or ())
            return {"name": hub.name, "partition_ids": hub.partition_ids}
        if op == "hub_info":
            hub = self.store.get(args["name"])
            if hub is None:
                raise KeyError(f"no hub {args['name']!r}")
            return {pid: part.properties() for pid, part in hub.partitions.items()}
        if op == "stats":
            links = [link for c in self.connections for s in c.sessions.values() for link in s.links.values()]
            consumers: dict[str, int] = {}
            for link in links:
                if isinstance(link, ConsumerLink) and not link.closed:
                    consumers[link.partition.hub_name] = consumers.get(link.partition.hub_name, 0) + 1
            return {"connections": len(self.connections), "links": len(links), "consumers": consumers,
                    "hubs": {h.name: len(h.partition_ids) for h in self.store.hubs.values()}}
        raise ValueError(f"unknown control op {op!r}")

    async def serve_control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                try:
                    request = json.loads(line)
                    result = await self.control(request["op"], request.get("args") or {})
                    reply = {"ok": True, "result": result}
                except Exception as exc:  # reported to the caller, never fatal to the hub
                    reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
                writer.write(json.dumps(reply).encode() + b"\n")
                await writer.drain()
        finally:
            writer.close()


async def run(args: argparse.Namespace) -> None:
    store = EventStore(args.persist_dir)
    for name, partitions, groups in parse_hub_specs(args.hubs):
        if store.get(name) is None or groups:
            store.create_hub(name, partitions, groups)
    server = HubServer(store, SasValidator(args.key_name, args.key), args.host)
    server.port = args.port
    await server.start_listening()
    tls_listener, ready = None, {}
    if args.tls_cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.tls_cert, args.tls_key)
        tls_listener = await asyncio.get_running_loop().create_server(
            lambda: AmqpConnection(server), args.host, args.tls_port, ssl=context, reuse_address=True)
        ready["tls_port"] = tls_listener.sockets[0].getsockname()[1]
    control = await asyncio.start_server(server.serve_control, args.host, args.control_port, reuse_address=True)
    control_port = control.sockets[0].getsockname()[1]
    heartbeats = asyncio.create_task(server.send_heartbeats())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if args.ready_file:
        tmp = args.ready_file + ".tmp"
        with open(tmp, "w") as fh:
            json.dump({"port": server.port, "control_port": control_port, "pid": os.getpid(), **ready}, fh)
        os.replace(tmp, args.ready_file)
    print(f"local hub listening on {args.host}:{server.port} (control {control_port})", flush=True)
    await stop.wait()
    heartbeats.cancel()
    control.close()
    if tls_listener is not None:
        tls_listener.close()
    await server.stop_listening()
    server.faults.drop_all_connections(graceful=True)
    await asyncio.sleep(0.1)  # let the close frames go out before the loop ends
    store.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Local Event Hubs-compatible AMQP hub")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--control-port", type=int, default=0)
    parser.add_argument("--hubs", default="eh1:4", help="comma-separated NAME:PARTITIONS[:CG1+CG2]")
    parser.add_argument("--persist-dir", default=None)
    parser.add_argument("--ready-file", default=None)
    parser.add_argument("--key-name", default=DEFAULT_KEY_NAME)
    parser.add_argument("--key", default=DEFAULT_KEY)
    parser.add_argument("--tls-cert", default=None, help="PEM certificate: also listen for AMQP over TLS")
    parser.add_argument("--tls-key", default=None, help="PEM private key of --tls-cert")
    parser.add_argument("--tls-port", type=int, default=0)
    asyncio.run(run(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
