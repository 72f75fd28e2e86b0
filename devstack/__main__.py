"""Start or stop the local stack in the background.

    python -m devstack up --dir .stack [--hubs eh1:4,eh2:8] [--persist-dir DIR]
    python -m devstack down --dir .stack

`up` returns once the hub and Azurite accept connections, and writes DIR/pids (what `down`
kills) and DIR/env (shell `export` lines with the worker's settings). `down` also stops the
hubs and Azurites that dead test sessions left behind (devstack/processes.py `reap_orphans`:
only processes whose recorded owner is gone and whose command line still matches the record).
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
import time

from .azurite import Azurite
from .local_hub import LocalHub
from .processes import command_line, reap_orphans
from .server import parse_hub_specs

CHECKPOINT_CONTAINER = "checkpoints"
# What each recorded pid's command line must contain, so `down` never kills a reused pid.
PROCESS_MARKERS = {"hub": "devstack.server", "azurite": "azurite"}


def _alive(pid: int, marker: str) -> bool:
    cmdline = command_line(pid)
    return cmdline is not None and bool(marker) and marker in cmdline


def _read_pids(stack_dir: str) -> dict[str, int]:
    try:
        with open(os.path.join(stack_dir, "pids")) as fh:
            return {name: int(pid) for name, pid in (line.split() for line in fh if line.strip())}
    except FileNotFoundError:
        return {}


def _terminate(pid: int, marker: str, timeout: float = 10.0) -> None:
    if not _alive(pid, marker):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid, marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _alive(pid, marker):
        os.kill(pid, signal.SIGKILL)


def up(args: argparse.Namespace) -> int:
    stack_dir = os.path.abspath(args.dir)
    running = {n: p for n, p in _read_pids(stack_dir).items() if _alive(p, PROCESS_MARKERS.get(n, ""))}
    if running:
        print(f"local stack already running in {stack_dir} ({running}); run `down` first", file=sys.stderr)
        return 1
    specs = parse_hub_specs(args.hubs)
    if not specs:
        print("--hubs names no hub", file=sys.stderr)
        return 2
    hub_dir, blob_dir = os.path.join(stack_dir, "hub"), os.path.join(stack_dir, "azurite")
    os.makedirs(hub_dir, exist_ok=True)
    os.makedirs(blob_dir, exist_ok=True)
    persist = os.path.abspath(args.persist_dir) if args.persist_dir else None
    hub = LocalHub(args.hubs, persist_dir=persist, work_dir=hub_dir)
    azurite = Azurite(location=blob_dir)
    try:
        hub.start()
        azurite.start()
        azurite.create_container(CHECKPOINT_CONTAINER)
    except Exception as exc:
        hub.kill()
        azurite.stop()
        print(f"local stack failed to start: {exc}", file=sys.stderr)
        return 1
    with open(os.path.join(stack_dir, "pids"), "w") as fh:
        fh.write(f"hub {hub.pid}\nazurite {azurite.pid}\n")
    # they outlive this process on purpose: DIR/pids owns them now, not the orphan registry
    hub.detach()
    azurite.detach()
    first_hub = specs[0][0]
    env = {
        "AMLWH_EVENTHUB__CONNECTION_STRING": hub.connection_string(first_hub),
        "AMLWH_EVENTHUB__NAME": first_hub,
        "AMLWH_CHECKPOINT__CONNECTION_STRING": azurite.connection_string,
        "AMLWH_CHECKPOINT__CONTAINER": CHECKPOINT_CONTAINER,
    }
    with open(os.path.join(stack_dir, "env"), "w") as fh:
        fh.writelines(f"export {k}={shlex.quote(v)}\n" for k, v in env.items())
    print(f"local hub on 127.0.0.1:{hub.port} (hubs {args.hubs}), Azurite on 127.0.0.1:{azurite.port}; "
          f"settings in {os.path.join(stack_dir, 'env')}")
    return 0


def down(args: argparse.Namespace) -> int:
    stack_dir = os.path.abspath(args.dir)
    pids = _read_pids(stack_dir)
    for name, pid in pids.items():
        _terminate(pid, PROCESS_MARKERS.get(name, ""))
    for leftover in ("pids", "env"):
        try:
            os.remove(os.path.join(stack_dir, leftover))
        except FileNotFoundError:
            pass
    print(f"local stack stopped ({', '.join(f'{n} {p}' for n, p in pids.items()) or 'nothing was running'})")
    orphans = reap_orphans()
    if orphans:
        print(f"stopped {len(orphans)} process(es) left behind by dead test sessions: "
              + ", ".join(f"{o['kind']} {o['pid']} (owner {o['owner']})" for o in orphans))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_up = sub.add_parser("up", help="start the hub and Azurite in the background")
    p_up.add_argument("--dir", default=".stack")
    p_up.add_argument("--hubs", default="eh1:4", help="comma-separated NAME:PARTITIONS (first one goes to env)")
    p_up.add_argument("--persist-dir", default=None, help="keep hub events here across restarts")
    p_down = sub.add_parser("down", help="stop the processes `up` started, and orphans of dead test sessions")
    p_down.add_argument("--dir", default=".stack")
    args = parser.parse_args(argv)
    return up(args) if args.command == "up" else down(args)


if __name__ == "__main__":
    sys.exit(main())
