"""Running `amlwh run` as a real process against the local hub and Azurite."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from consumer.query.connection import query_warehouse
from devstack.processes import register, unregister
from tests.support.cli import clean_env
from tests.support.events import REPO

FAST = {  # short intervals so tests do not wait on production defaults
    "AMLWH_EVENTHUB__LOAD_BALANCING_INTERVAL_S": "1",
    "AMLWH_EVENTHUB__OWNERSHIP_EXPIRATION_S": "6",
    "AMLWH_EVENTHUB__MAX_WAIT_TIME_S": "0.5",
    "AMLWH_WRITER__MAX_SECONDS": "0.5",
    "AMLWH_ORDERING__MAX_LATENESS_S": "2",
}


def worker_env(hub_cs: str, checkpoint_cs: str, container: str, warehouse: Path, **extra: str) -> dict:
    return clean_env(**{**FAST, "AMLWH_EVENTHUB__CONNECTION_STRING": hub_cs,
                        "AMLWH_CHECKPOINT__CONNECTION_STRING": checkpoint_cs,
                        "AMLWH_CHECKPOINT__CONTAINER": container, "AMLWH_WAREHOUSE__PATH": str(warehouse),
                        **extra})  # later keys win: `extra` overrides FAST


def start_worker(env: dict, log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen([sys.executable, "-m", "consumer", "run"], env=env, cwd=REPO,
                                stdout=out, stderr=subprocess.STDOUT)
    proc.log_path = Path(log)  # for stop_worker's report
    # recorded like the hub, so a reaper stops it should this test process die without stopping it
    proc.record = register("worker", proc, ["-m consumer run"], group=False)
    return proc


def log_tail(log: Path | None, chars: int = 4000) -> str:
    if log is None:
        return "(no log)"
    try:
        return Path(log).read_text(errors="replace")[-chars:]
    except FileNotFoundError:
        return f"(no log at {log})"


def stop_worker(proc: subprocess.Popen, timeout: float = 30) -> int:
    """SIGTERM, then the exit code once it stopped. A worker still running `timeout` seconds
    later is SIGKILLed (never left behind) and the test fails with its log's tail."""
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        log = getattr(proc, "log_path", None)
        raise AssertionError(f"worker {proc.pid} did not stop within {timeout}s of SIGTERM, so it was "
                             f"SIGKILLed; tail of {log}:\n{log_tail(log)}") from None
    finally:
        if proc.returncode is not None:
            unregister(getattr(proc, "record", None))


def stored_event_count(warehouse: Path) -> int:
    if not (warehouse / "raw_events").is_dir():
        return 0
    # committed rows only: events still in a reorder buffer are visible as provisional
    return query_warehouse(warehouse, "SELECT count(*) FROM raw_events WHERE NOT provisional")[1][0][0]


def wait_until(predicate, timeout: float, what: str, proc=None, interval: float = 0.2):
    """Poll `predicate` until it returns something truthy and return that; fail after `timeout`,
    or at once with the log's tail when the worker `proc` exits first."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"worker exited with {proc.returncode} waiting for {what}:\n"
                                 f"{log_tail(proc.log_path)}")
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(interval)
    return value


def wait_for_events(warehouse: Path, expected: int, timeout: float, proc=None) -> int:
    deadline = time.monotonic() + timeout
    count = 0
    while time.monotonic() < deadline:
        count = stored_event_count(warehouse)
        if count >= expected:
            return count
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"worker exited with {proc.returncode}:\n{log_tail(getattr(proc, 'log_path', None))}")
        time.sleep(0.3)
    return count


def claimed_partitions(log: Path) -> set[str]:
    """Partitions the worker writing `log` holds: claimed and not closed since. The SDK reads a
    partition's checkpoint before it calls on_partition_initialize, which logs the claim."""
    held: set[str] = set()
    text = log.read_text(errors="replace") if log.exists() else ""
    for line in text.splitlines():
        if m := re.search(r"amlwh\.worker: partition (\d+) claimed", line):
            held.add(m.group(1))
        elif m := re.search(r"amlwh\.worker: partition (\d+) closed", line):
            held.discard(m.group(1))
    return held


def wait_for_claims(proc: subprocess.Popen, partitions: int, timeout: float = 60) -> set[str]:
    """Wait until the worker holds `partitions` partitions (from its log); fail with the log's
    tail if it exits first or the deadline passes."""
    log = proc.log_path
    deadline = time.monotonic() + timeout
    while len(held := claimed_partitions(log)) < partitions:
        if proc.poll() is not None:
            raise AssertionError(f"worker exited with {proc.returncode} holding {sorted(held)}:\n{log_tail(log)}")
        if time.monotonic() > deadline:
            raise AssertionError(f"worker holds {sorted(held)} after {timeout}s, not {partitions} "
                                 f"partitions:\n{log_tail(log)}")
        time.sleep(0.1)
    return held
