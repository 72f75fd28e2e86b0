"""Shared by the live-worker benchmark parts (worker_throughput, worker_rss, worker_latency, worker_files):
their options, the local hub + Azurite they run against, how a worker, a producer and the raw
SDK baseline are started, and what is polled while they run.

Every measured process runs under bench/launch.py's launcher, which reports its peak RSS and
CPU time from os.wait4.
"""

from __future__ import annotations

import os
import re
import sys
import time
import uuid
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.common import ROOT, child_env
from bench.launch import Launched

CLAIM_RE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) INFO amlwh\.worker: partition (\S+) claimed",
                      re.M)


@dataclass(frozen=True)
class WorkerOptions:
    """Everything the parts read from the command line, resolved (quick or full defaults)."""

    worker_cmd: tuple[str, ...]  # stands for `amlwh`; `run` is appended
    lb_interval: float  # [eventhub] load_balancing_interval_s of the worker and the raw baseline
    prefetch: int | None  # [eventhub] prefetch of the worker and the raw baseline (None: the worker's)
    max_batch_size: int | None  # likewise [eventhub] max_batch_size
    timeout: float  # per consumer run
    keep: bool
    seed: int
    payload_bytes: int
    # 1. throughput
    repeats: int
    events: int
    partitions: int
    span_hours: int
    skip_tail: bool
    profile: bool
    # 2. RSS
    rss_partitions: int
    rss_rate: float
    rss_seconds: float
    # 3. latency
    latency_rate: float
    latency_warmup: float
    latency_window: float
    latency_settings: tuple[float | None, ...]  # None = the default max_lateness
    # 4. files (automatic compaction vs none)
    files_partitions: int = 4
    files_rate: float = 50.0
    files_seconds: float = 3600.0
    files_interval: float = 300.0  # [compaction] interval_s of the "auto" worker
    files_min_files: int = 8  # [compaction] min_files of the "auto" worker
    files_sample: float = 60.0  # seconds between two looks at the warehouses
    files_sequential: bool = False  # the two workers one after the other, not side by side

    def worker_overrides(self) -> dict[str, str]:
        """The settings every worker gets on top of the production defaults."""
        env = {}
        if self.prefetch:
            env["AMLWH_EVENTHUB__PREFETCH"] = str(self.prefetch)
        if self.max_batch_size:
            env["AMLWH_EVENTHUB__MAX_BATCH_SIZE"] = str(self.max_batch_size)
        return env


# -- the stack ------------------------------------------------------------------------
@dataclass(frozen=True)
class Stack:
    """One LocalHub and one Azurite for the whole run; each measurement makes its own event hub
    and checkpoint container in them."""

    hub: Any  # devstack.LocalHub
    azurite: Any  # devstack.Azurite

    def new_hub(self, prefix: str, partitions: int) -> tuple[str, str]:
        """A fresh event hub: (its name, its connection string)."""
        name = f"{prefix}-{uuid.uuid4().hex[:6]}"
        self.hub.create_hub(name, partitions)
        return name, self.hub.connection_string(name)

    def new_container(self, prefix: str) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        self.azurite.create_container(name)
        return name

    def cpu(self) -> StackCPU:
        return StackCPU(self.hub.pid, self.azurite.pid)


@contextmanager
def local_stack() -> Iterator[Stack]:
    from devstack import Azurite, LocalHub

    with LocalHub("warm:1") as hub, Azurite() as azurite:
        yield Stack(hub, azurite)


# -- processes --------------------------------------------------------------------------
class LaunchedWorker(Launched):
    """`amlwh run` under the launcher, plus its partition claims read from its log."""

    def claims(self) -> list[float]:
        """Wall times of the worker's "partition N claimed" log lines (asctime is local time)."""
        return sorted(datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
                      for m in CLAIM_RE.finditer(self.text()))

    def wait_for_claims(self, count: int, timeout: float) -> list[float]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.alive:
            claims = self.claims()
            if len(claims) >= count:
                return claims
            time.sleep(0.2)
        raise RuntimeError(f"{self.name}: {len(self.claims())} of {count} partitions claimed after "
                           f"{timeout:.0f}s; log tail:\n{self.text()[-3000:]}")

    def log_errors(self) -> int:
        return sum(1 for line in self.text().splitlines() if " ERROR " in line or "Traceback" in line)


def worker_env(opts: WorkerOptions, hub_cs: str, checkpoint_cs: str, container: str, warehouse: Path,
               **extra: str) -> dict:
    """Production defaults, except the load-balancing interval, `opts.worker_overrides()` and `extra`.

    The interval is 1 s (0.3 s quick) instead of 10 s: the balanced strategy claims one
    partition per interval, so a lone worker would need 30 s to claim 4 partitions."""
    env = child_env(**opts.worker_overrides())
    env.update(PYTHONPATH=str(ROOT), AMLWH_EVENTHUB__CONNECTION_STRING=hub_cs,
               AMLWH_CHECKPOINT__CONNECTION_STRING=checkpoint_cs, AMLWH_CHECKPOINT__CONTAINER=container,
               AMLWH_WAREHOUSE__PATH=str(warehouse),
               AMLWH_EVENTHUB__LOAD_BALANCING_INTERVAL_S=str(opts.lb_interval))
    env.update(extra)
    return env


def start_worker(opts: WorkerOptions, stack: Stack, name: str, hub_cs: str, container: str, warehouse: Path,
                 work: Path, **extra: str) -> LaunchedWorker:
    """`amlwh run` (opts.worker_cmd) on the hub `hub_cs`, checkpoints in `container`."""
    env = worker_env(opts, hub_cs, stack.azurite.connection_string, container, warehouse, **extra)
    return LaunchedWorker(name, [*opts.worker_cmd, "run"], env, work)


def start_producer(name: str, hub_cs: str, partitions: int, rate: float, seconds: float, work: Path,
                   seed: int, payload_bytes: int) -> tuple[Launched, Path]:
    """bench/live_producer.py in its own process; it writes its report to the returned path."""
    out = work / f"{name}.json"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "bench.live_producer", "--hub-cs", hub_cs, "--out", str(out),
           "--partitions", str(partitions), "--rate", str(rate), "--seconds", str(seconds),
           "--seed", str(seed), "--payload-bytes", str(payload_bytes)]
    return Launched(name, cmd, env, work), out


def partition_of(subject: str | None, partitions: int) -> int:
    """Keyed by subject, like `amlwh publish --partition-key subject` (the hub's own key hash
    differs; only the grouping matters here)."""
    return zlib.crc32((subject or "").encode()) % partitions


# -- polled while a process runs -------------------------------------------------------------
def rss_tree(pid: int) -> int:
    import psutil

    try:
        proc = psutil.Process(pid)
        return proc.memory_info().rss + sum(c.memory_info().rss for c in proc.children(recursive=True))
    except psutil.Error:
        return 0


def cpu_of(pid: int) -> float:
    import psutil

    try:
        t = psutil.Process(pid).cpu_times()
        return t.user + t.system
    except psutil.Error:
        return float("nan")


class StackCPU:
    """CPU seconds of the hub and Azurite processes (and their children) between two points."""

    def __init__(self, *pids: int):
        self.pids = pids
        self.t0, self.c0 = time.time(), self._cpu()

    def _cpu(self) -> list[float]:
        import psutil

        out = []
        for pid in self.pids:
            total = 0.0
            try:
                proc = psutil.Process(pid)
                for p in [proc] + proc.children(recursive=True):
                    t = p.cpu_times()
                    total += t.user + t.system
            except psutil.Error:
                pass
            out.append(total)
        return out

    def cores(self) -> list[float]:
        """Cores used by each process since construction."""
        c1, dt = self._cpu(), time.time() - self.t0
        return [(b - a) / dt for a, b in zip(self.c0, c1)]


class RawCounter:
    """Rows committed to raw_events, summed from the footers of files not seen before."""

    def __init__(self, warehouse: Path):
        self.folder = warehouse / "raw_events"
        self.rows: dict[str, int] = {}

    def count(self) -> int:
        import pyarrow.parquet as pq

        if self.folder.is_dir():
            for path in self.folder.glob("*/*.parquet"):
                key = str(path)
                if key not in self.rows:
                    self.rows[key] = pq.read_metadata(path).num_rows
        return sum(self.rows.values())
