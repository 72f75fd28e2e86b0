"""Running `amlwh run` as a real process against the local hub and Azurite."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from consumer.query.connection import connect
from tests.support.events import REPO

FAST = {  # short intervals so tests do not wait on production defaults
    "AMLWH_EVENTHUB__LOAD_BALANCING_INTERVAL_S": "1",
    "AMLWH_EVENTHUB__OWNERSHIP_EXPIRATION_S": "6",
    "AMLWH_EVENTHUB__MAX_WAIT_TIME_S": "0.5",
    "AMLWH_WRITER__MAX_SECONDS": "0.5",
    "AMLWH_ORDERING__MAX_LATENESS_S": "2",
}


def worker_env(hub_cs: str, checkpoint_cs: str, container: str, warehouse: Path, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMLWH_")}
    env.update(FAST)
    env.update(PYTHONPATH=str(REPO), AMLWH_EVENTHUB__CONNECTION_STRING=hub_cs,
               AMLWH_CHECKPOINT__CONNECTION_STRING=checkpoint_cs, AMLWH_CHECKPOINT__CONTAINER=container,
               AMLWH_WAREHOUSE__PATH=str(warehouse))
    env.update(extra)
    return env


def start_worker(env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "consumer", "run"], env=env, cwd=REPO,
                            stdout=open(log, "ab"), stderr=subprocess.STDOUT)


def stop_worker(proc: subprocess.Popen, timeout: float = 30) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout)


def stored_event_count(warehouse: Path) -> int:
    if not (warehouse / "raw_events").is_dir():
        return 0
    con = connect(warehouse)
    try:
        # committed rows only: events still in a reorder buffer are visible as provisional
        return con.execute("SELECT count(*) FROM raw_events WHERE NOT provisional").fetchone()[0]
    finally:
        con.close()


def wait_for_events(warehouse: Path, expected: int, timeout: float, proc=None) -> int:
    deadline = time.monotonic() + timeout
    count = 0
    while time.monotonic() < deadline:
        count = stored_event_count(warehouse)
        if count >= expected:
            return count
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"worker exited with {proc.returncode}")
        time.sleep(0.3)
    return count
