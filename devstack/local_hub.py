"""LocalHub: runs the hub in its own process and drives it from tests.

A separate process so tests can kill and restart it (same port; same events when persist_dir
is given) and measure its CPU apart from the client's.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .processes import ChildProcess, terminate
from .server import DEFAULT_KEY, DEFAULT_KEY_NAME, format_hub_specs, parse_hub_specs

REPO_ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 20.0


class HubControlError(RuntimeError):
    pass


class LocalHub(ChildProcess):
    def __init__(self, hubs: str | dict[str, int] = "eh1:4", *, persist_dir: str | None = None,
                 host: str = "127.0.0.1", port: int = 0, key_name: str = DEFAULT_KEY_NAME,
                 key: str = DEFAULT_KEY, work_dir: str | None = None, tls_cert: str | None = None,
                 tls_key: str | None = None):
        specs = parse_hub_specs(hubs) if isinstance(hubs, str) else [(n, p, ()) for n, p in hubs.items()]
        # Passed again on every start, so a restarted in-memory hub has the same hubs.
        self._hubs: dict[str, tuple[int, tuple[str, ...]]] = {n: (p, g) for n, p, g in specs}
        self.persist_dir = persist_dir
        self.host = host
        self.port = port
        self.control_port = 0
        # with a certificate, a second listener speaks AMQP over TLS (tls_port), for clients
        # built from a fully qualified namespace and a token credential
        self.tls_cert, self.tls_key = tls_cert, tls_key
        self.tls_port = 0
        self.key_name = key_name
        self.key = key
        self._own_work_dir = work_dir is None
        self.work_dir = work_dir or tempfile.mkdtemp(prefix="amlwh-hub-")
        self.log_path = os.path.join(self.work_dir, "hub.log")
        self._proc: subprocess.Popen | None = None

    # ------------------------------------------------------------ lifecycle

    def start(self) -> LocalHub:
        if self.running:
            return self
        ready = os.path.join(self.work_dir, "hub.ready")
        if os.path.exists(ready):
            os.remove(ready)
        cmd = [sys.executable, "-m", "devstack.server", "--host", self.host, "--port", str(self.port),
               "--control-port", str(self.control_port), "--ready-file", ready,
               "--hubs", format_hub_specs([(n, p, g) for n, (p, g) in self._hubs.items()]),
               "--key-name", self.key_name, "--key", self.key]
        if self.persist_dir:
            cmd += ["--persist-dir", self.persist_dir]
        if self.tls_cert:
            cmd += ["--tls-cert", str(self.tls_cert), "--tls-key", str(self.tls_key), "--tls-port", str(self.tls_port)]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])))
        log = open(self.log_path, "ab")
        try:
            self._proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, start_new_session=True)
        finally:
            log.close()
        # recorded until stop()/kill(), so a reaper stops it if this process dies first
        self._track("hub", ["devstack.server", ready])
        deadline = time.monotonic() + START_TIMEOUT_S
        while not os.path.exists(ready):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"local hub did not start; log {self.log_path}:\n{self.log_tail()}")
            time.sleep(0.02)
        with open(ready) as fh:
            info = json.load(fh)
        self.port, self.control_port = info["port"], info["control_port"]
        self.tls_port = info.get("tls_port", 0)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Graceful stop (SIGTERM): clients see their connections closed."""
        if self._proc is None:
            return
        terminate(self._proc, timeout)
        self._proc = None
        self._untrack()

    def kill(self) -> None:
        """Crash the hub (SIGKILL): no goodbye to clients."""
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.kill()
            self._proc.wait()
            self._proc = None
            self._untrack()

    def cleanup(self) -> None:
        """Stop and remove the work directory this object created (logs, ready file)."""
        self.stop()
        if self._own_work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_tail(self, lines: int = 40) -> str:
        try:
            with open(self.log_path, errors="replace") as fh:
                return "".join(fh.readlines()[-lines:])
        except FileNotFoundError:
            return ""

    def __enter__(self) -> LocalHub:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.cleanup()

    # ------------------------------------------------------------ addressing

    def connection_string(self, hub: str = "eh1", *, key: str | None = None) -> str:
        return (f"Endpoint=sb://{self.host}:{self.port};SharedAccessKeyName={self.key_name};"
                f"SharedAccessKey={key or self.key};UseDevelopmentEmulator=true;EntityPath={hub}")

    @property
    def fully_qualified_namespace(self) -> str:
        """The TLS listener as `[eventhub] fully_qualified_namespace` (host:port)."""
        if not self.tls_port:
            raise RuntimeError("this LocalHub has no TLS listener: pass tls_cert and tls_key")
        return f"{self.host}:{self.tls_port}"

    @property
    def namespace_connection_string(self) -> str:
        return self.connection_string().rsplit(";EntityPath=", 1)[0]

    # ------------------------------------------------------------ control channel

    def _control(self, op: str, **args):
        with socket.create_connection((self.host, self.control_port), timeout=10) as sock:
            sock.sendall(json.dumps({"op": op, "args": args}).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        reply = json.loads(data)
        if not reply.get("ok"):
            raise HubControlError(reply.get("error"))
        return reply.get("result")

    def drop_all_connections(self, graceful: bool = False) -> int:
        """Cut every open AMQP connection; returns how many there were."""
        return self._control("drop_all_connections", graceful=graceful)

    def refuse_connections(self, seconds: float) -> None:
        """Stop accepting connections for `seconds` (clients get ECONNREFUSED)."""
        self._control("refuse_connections", seconds=seconds)

    def delay_deliveries(self, seconds: float) -> None:
        """Hold every event back from consumers until it is `seconds` old (0 turns it off)."""
        self._control("delay_deliveries", seconds=seconds)

    def stall_partition(self, hub: str, partition: str) -> int:
        """Stop delivering to the receivers attached to `hub`'s `partition` now (sends and
        partition properties go on; a receiver attached later is served). Returns how many
        receivers were stalled; reset_faults ends it."""
        return self._control("stall_partition", hub=hub, partition=str(partition))

    def reset_faults(self) -> None:
        self._control("reset_faults")

    def create_hub(self, name: str, partitions: int, consumer_groups: tuple[str, ...] = ()) -> list[str]:
        result = self._control("create_hub", name=name, partitions=partitions, consumer_groups=list(consumer_groups))
        known = self._hubs.get(name, (partitions, ()))[1]
        self._hubs[name] = (partitions, tuple(dict.fromkeys(known + tuple(consumer_groups))))
        return result["partition_ids"]

    def partition_info(self, hub: str = "eh1") -> dict:
        return self._control("hub_info", name=hub)

    def stats(self) -> dict:
        return self._control("stats")

    def wait_for_consumers(self, hub: str, count: int = 1, timeout: float = 10.0) -> None:
        """Block until at least `count` receiver links are attached to `hub` (e.g. before
        sending to a consumer that starts at @latest)."""
        deadline = time.monotonic() + timeout
        while self.stats()["consumers"].get(hub, 0) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"fewer than {count} consumers on {hub} after {timeout}s")
            time.sleep(0.02)

    def ping(self) -> dict:
        return self._control("ping")
