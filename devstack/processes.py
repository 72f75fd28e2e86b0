"""Child-process chores shared by the hub and Azurite helpers, and the registry that makes sure
those children never outlive whoever started them.

The hub and Azurite run in process groups of their own (so a Ctrl-C in a terminal does not hit
them), which also means nothing stops them when the process that started them dies without
cleaning up (pytest SIGKILLed or crashed). So every start records a small JSON file in
`registry_dir()`: the child's pid, process group and start time, strings its command line must
contain (markers), and the pid and start time of the owning process; a stop removes it.
`reap_orphans()` stops every recorded child whose owner is gone. It is called by the pytest
plugin when a session starts (and for its own leftovers when it ends) and by
`python -m devstack down` (`make stack-down`).

Nothing is killed unless the pid still runs a command line with every recorded marker and (where
the system tells) started at the recorded time: a pid reused by an unrelated process is left
alone, and only its stale record is dropped.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

# Set (e.g. by a test) to use another registry folder; read on every call.
REGISTRY_ENV = "DEVSTACK_REGISTRY_DIR"
REAP_TIMEOUT_S = 10.0


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def wait_for_port(host: str, port: int, timeout: float, proc: subprocess.Popen | None = None) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def terminate(proc: subprocess.Popen, timeout: float, *, group: bool = False) -> None:
    """SIGTERM (to the whole process group when `group`), then SIGKILL after `timeout`."""
    if proc.poll() is not None:
        return

    def send(sig: int) -> None:
        try:
            os.killpg(proc.pid, sig) if group else proc.send_signal(sig)
        except ProcessLookupError:
            pass

    send(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        send(signal.SIGKILL)
        proc.wait()


# ---------------------------------------------------------------- looking at other processes


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, process group, start time in clock ticks since boot) from /proc, or None when
    the process does not exist (or the system has no /proc)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()  # after the command name, which may hold spaces
        return fields[0].decode(), int(fields[2]), int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def _has_proc() -> bool:
    return os.path.isdir("/proc/self")


def start_time(pid: int) -> int | None:
    stat = _stat(pid)
    return stat[2] if stat else None


def command_line(pid: int) -> str | None:
    """The pid's command line (arguments joined by spaces); None if it is gone or a zombie."""
    if _has_proc():
        stat = _stat(pid)
        if stat is None or stat[0] in ("Z", "X"):
            return None
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                return fh.read().replace(b"\0", b" ").decode(errors="replace").strip() or None
        except OSError:
            return None
    try:  # no /proc (macOS): ask ps
        out = subprocess.run(["ps", "-o", "state=,command=", "-p", str(pid)], capture_output=True, check=False,
                             text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    if not out or out.startswith("Z"):
        return None
    return out.split(None, 1)[1] if " " in out else None


def process_matches(pid: int, markers: list[str], started: int | None = None) -> bool:
    """True when `pid` is a live process whose command line holds every marker and, when
    `started` is known, that started at that time (so not a later process reusing the pid)."""
    cmdline = command_line(pid)
    if cmdline is None or not all(m in cmdline for m in markers):
        return False
    return started is None or start_time(pid) in (None, started)


def process_alive(pid: int, started: int | None = None) -> bool:
    """True when `pid` runs (not a zombie) and, when `started` is known, is the same process."""
    if _has_proc():
        stat = _stat(pid)
        return stat is not None and stat[0] not in ("Z", "X") and (started is None or stat[2] == started)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ---------------------------------------------------------------- the registry


def registry_dir() -> Path:
    """Where started children are recorded: $DEVSTACK_REGISTRY_DIR, else a per-user folder in the
    system temp dir (shared by every checkout and copy on this machine, so any of them reaps
    what another one left behind)."""
    folder = os.environ.get(REGISTRY_ENV)
    if folder:
        return Path(folder)
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    return Path(tempfile.gettempdir()) / f"amlwh-devstack-{uid}"


def register(kind: str, proc: subprocess.Popen, markers: list[str], *, group: bool = True,
             folder: Path | None = None) -> Path:
    """Record a started child (its own process group when `group`), owned by this process."""
    folder = folder or registry_dir()
    folder.mkdir(parents=True, exist_ok=True)
    owner = os.getpid()
    entry = {"kind": kind, "pid": proc.pid, "pgid": proc.pid if group else None, "markers": markers,
             "started": start_time(proc.pid), "owner": owner, "owner_started": start_time(owner)}
    path = folder / f"{kind}-{proc.pid}.json"
    tmp = path.with_suffix(f".tmp{owner}")
    tmp.write_text(json.dumps(entry))
    os.replace(tmp, path)  # readers never see half a record
    return path


def unregister(path: Path | None) -> None:
    if path is not None:
        try:
            path.unlink()
        except FileNotFoundError:
            pass


def registered(folder: Path | None = None) -> list[tuple[Path, dict]]:
    folder = folder or registry_dir()
    entries = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else ():
        try:
            entry = json.loads(path.read_text())
        except FileNotFoundError:
            continue  # removed meanwhile
        except (OSError, ValueError):
            entry = None
        if not (isinstance(entry, dict) and isinstance(entry.get("pid"), int)
                and isinstance(entry.get("owner"), int) and isinstance(entry.get("markers"), list) and entry["markers"]
                and all(isinstance(m, str) and m for m in entry["markers"])):
            unregister(path)  # not a record this module wrote (no markers: could match anything)
            continue
        entries.append((path, entry))
    return entries


def stop_recorded(entry: dict, timeout: float = REAP_TIMEOUT_S) -> bool:
    """SIGTERM the recorded child (its whole group when it leads one), SIGKILL after `timeout`;
    only when its command line and start time still match the record. True if it was stopped."""
    pid, markers, started = entry["pid"], entry["markers"], entry.get("started")
    if not process_matches(pid, markers, started):
        return False
    stat = _stat(pid)
    group = entry.get("pgid") == pid and stat is not None and stat[1] == pid  # still leads its group

    def send(sig: int) -> None:
        try:
            os.killpg(pid, sig) if group else os.kill(pid, sig)
        except ProcessLookupError:
            pass

    for sig in (signal.SIGTERM, signal.SIGKILL):
        send(sig)
        deadline = time.monotonic() + timeout
        while process_matches(pid, markers, started) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not process_matches(pid, markers, started):
            return True
    return False


def reap_orphans(folder: Path | None = None, *, owned_by: int | None = None,
                 timeout: float = REAP_TIMEOUT_S) -> list[dict]:
    """Stop every recorded child whose owner is dead (or, with `owned_by`, every child of that
    owner) and drop their records; returns the records of the children it stopped. Records of
    children that are gone (or whose pid now runs something else) are dropped without a kill."""
    stopped = []
    for path, entry in registered(folder):
        if owned_by is not None:
            if entry["owner"] != owned_by:
                continue
        elif process_alive(entry["owner"], entry.get("owner_started")):
            continue  # its owner is still running and will stop it
        if stop_recorded(entry, timeout):
            stopped.append(entry)
        elif process_matches(entry["pid"], entry["markers"], entry.get("started")):
            continue  # survived SIGKILL (stuck in the kernel?): keep the record, try again next time
        unregister(path)
    return stopped


class ChildProcess:
    """State shared by helpers that run one child process (`_proc`), recorded in the registry
    while it runs."""

    _proc: subprocess.Popen | None = None
    _record: Path | None = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def _track(self, kind: str, markers: list[str]) -> None:
        self._record = register(kind, self._proc, markers)

    def _untrack(self) -> None:
        unregister(self._record)
        self._record = None

    def detach(self) -> None:
        """Let the child outlive this process on purpose (`python -m devstack up` hands it to
        DIR/pids): drop its registry record, so no reaper stops it."""
        self._untrack()
