"""Hubs and Azurites run in process groups of their own, so nothing stops them when the process
that started them dies without cleaning up. Each start records them (devstack/processes.py) and
the reaper stops the ones whose owner is gone: at pytest session start, in `python -m devstack
down`, and never a process whose command line (or start time) no longer matches the record.

Every test uses a private registry folder (DEVSTACK_REGISTRY_DIR in the children's environment,
passed explicitly here), so it neither sees nor touches other sessions' hubs."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from devstack.processes import REGISTRY_ENV, command_line, reap_orphans, register, registered, start_time
from tests.support.events import REPO

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

# Starts what argv asks for, writes their pids and ports to argv[1], then waits to be killed.
OWNER = textwrap.dedent("""
    import json, os, sys, time
    from devstack import Azurite, LocalHub
    out, work = sys.argv[1], sys.argv[2]
    os.makedirs(work + "/hub", exist_ok=True)
    info = {}
    hub = LocalHub("eh1:1", work_dir=work + "/hub").start()
    info["hub"] = [hub.pid, hub.port]
    if "azurite" in sys.argv[3:]:
        blobs = Azurite(location=work + "/azurite").start()
        info["azurite"] = [blobs.pid, blobs.port]
    with open(out + ".tmp", "w") as fh:
        json.dump(info, fh)
    os.replace(out + ".tmp", out)
    time.sleep(600)
""")

# The same from inside a pytest session: the session fixture starts the hub.
SESSION_TEST = textwrap.dedent("""
    import json, os, sys, time

    def test_hold_the_hub(local_hub):
        out = os.environ["ORPHAN_INFO"]
        with open(out + ".tmp", "w") as fh:
            json.dump({"hub": [local_hub.pid, local_hub.port]}, fh)
        os.replace(out + ".tmp", out)
        time.sleep(600)
""")

MARKERS = {"hub": "devstack.server", "azurite": "azurite"}


def child_env(registry: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AMLWH_", "PYTEST_"))}
    env.update(PYTHONPATH=str(REPO), **{REGISTRY_ENV: str(registry)}, **extra)
    return env


def wait_for_info(path: Path, owner: subprocess.Popen, timeout: float = 60) -> dict[str, list[int]]:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if owner.poll() is not None:
            raise AssertionError(f"the owner exited with {owner.returncode}:\n{owner.stdout.read()}")
        assert time.monotonic() < deadline, f"the owner wrote nothing to {path} in {timeout}s"
        time.sleep(0.05)
    return json.loads(path.read_text())


def serving(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


def running(kind: str, pid: int) -> bool:
    cmdline = command_line(pid)
    return cmdline is not None and MARKERS[kind] in cmdline


def sigkill(owner: subprocess.Popen) -> None:
    owner.send_signal(signal.SIGKILL)
    assert owner.wait(10) == -signal.SIGKILL


def kill_leftovers(info: dict[str, list[int]]) -> None:
    """Whatever a failed test leaves running (checked by command line first)."""
    for kind, (pid, _) in info.items():
        if running(kind, pid):
            os.killpg(pid, signal.SIGKILL)


def orphan(tmp_path: Path, registry: Path, *extra: str) -> tuple[dict[str, list[int]], int]:
    """Start a hub (and Azurite) from a child Python process, SIGKILL the child, and check that
    what it started is now an orphan: still serving, still recorded, its owner dead."""
    info_path = tmp_path / "owner.json"
    owner = subprocess.Popen([sys.executable, "-c", OWNER, str(info_path), str(tmp_path), *extra],
                             env=child_env(registry), cwd=REPO, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    try:
        info = wait_for_info(info_path, owner)
    finally:
        sigkill(owner)
    records = {e["kind"]: e for _, e in registered(registry)}
    assert {k: e["pid"] for k, e in records.items()} == {k: pid for k, (pid, _) in info.items()}
    assert all(e["owner"] == owner.pid for e in records.values())
    for kind, (pid, port) in info.items():
        assert running(kind, pid) and serving(port), f"the {kind} died with its owner: nothing to show"
    return info, owner.pid


def assert_stopped(info: dict[str, list[int]], registry: Path) -> None:
    deadline = time.monotonic() + 10
    while any(running(kind, pid) for kind, (pid, _) in info.items()) and time.monotonic() < deadline:
        time.sleep(0.05)  # `down`/the session exited once they were gone; this is only slack
    for kind, (pid, port) in info.items():
        assert not running(kind, pid), f"orphaned {kind} {pid} still running"
        assert not serving(port), f"orphaned {kind} still accepts connections on {port}"
    assert registered(registry) == []


def test_reaper_stops_the_hub_and_azurite_of_a_sigkilled_owner(tmp_path):
    registry = tmp_path / "registry"
    info, owner = orphan(tmp_path, registry, "azurite")
    try:
        stopped = reap_orphans(registry)
        assert sorted((e["kind"], e["pid"], e["owner"]) for e in stopped) == sorted(
            (kind, pid, owner) for kind, (pid, _) in info.items())
        assert_stopped(info, registry)
        assert reap_orphans(registry) == []  # nothing left to do
    finally:
        kill_leftovers(info)


def test_devstack_down_stops_orphans(tmp_path):
    registry = tmp_path / "registry"
    info, owner = orphan(tmp_path, registry)
    try:
        down = subprocess.run([sys.executable, "-m", "devstack", "down", "--dir", str(tmp_path / "stack")],
                              env=child_env(registry), cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
        assert down.returncode == 0, down.stderr
        assert f"hub {info['hub'][0]} (owner {owner})" in down.stdout, down.stdout
        assert_stopped(info, registry)
    finally:
        kill_leftovers(info)


def test_a_new_pytest_session_stops_the_hub_of_a_sigkilled_one(tmp_path):
    registry = tmp_path / "registry"
    tests = tmp_path / "session"
    tests.mkdir()
    (tests / "test_hold.py").write_text(SESSION_TEST)
    (tests / "test_nothing.py").write_text("def test_nothing():\n    pass\n")

    def session(test: str, **env: str) -> subprocess.Popen:
        # the suite's plugin, nothing else from this repo's configuration
        return subprocess.Popen(
            [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", "-p", "devstack.pytest_plugin",
             "--rootdir", str(tests), "-c", os.devnull, "--basetemp", str(tmp_path / f"base-{test}"),
             str(tests / test)],
            env=child_env(registry, **env), cwd=tests, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    dying = session("test_hold.py", ORPHAN_INFO=str(tmp_path / "owner.json"))
    try:
        info = wait_for_info(tmp_path / "owner.json", dying)
    finally:
        sigkill(dying)
    try:
        assert running("hub", info["hub"][0]) and serving(info["hub"][1])  # orphaned by the SIGKILL
        nxt = session("test_nothing.py")
        out, _ = nxt.communicate(timeout=90)
        assert nxt.returncode == 0, out
        assert f"devstack: stopped 1 process(es) left behind by dead test sessions: hub pid {info['hub'][0]}" \
            in out, out
        assert_stopped(info, registry)
    finally:
        kill_leftovers(info)


def test_reaper_never_kills_a_process_the_record_does_not_describe(tmp_path):
    """A live owner keeps its children; a reused pid (other command line, or same command line
    but a later start) is left running and only its stale record goes."""
    registry = tmp_path / "registry"
    lookalike = [sys.executable, "-c", "import time; time.sleep(600)", "devstack.server", "/x/hub.ready"]
    procs = [subprocess.Popen(cmd) for cmd in (["sleep", "600"], lookalike, lookalike)]
    try:
        unrelated, later, owned = procs
        dead_owner = subprocess.Popen(["true"])
        dead_owner.wait()

        def record(proc: subprocess.Popen, **changes) -> Path:
            path = register("hub", proc, ["devstack.server", "/x/hub.ready"], folder=registry)
            path.write_text(json.dumps(dict(json.loads(path.read_text()), **changes)))
            return path

        record(unrelated, owner=dead_owner.pid, owner_started=1)  # pid now runs `sleep`
        record(later, owner=dead_owner.pid, owner_started=1, started=start_time(later.pid) - 1)
        kept = record(owned)  # owner: this process, alive
        assert reap_orphans(registry) == []
        assert [p.poll() for p in procs] == [None, None, None]
        assert [path for path, _ in registered(registry)] == [kept]
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
