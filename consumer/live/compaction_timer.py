"""The live worker's automatic compaction.

Every `[compaction] interval_s`, if the worker committed anything since the last round, a
child process (`amlwh compact`) merges the warehouse's partitions that have gathered
`min_files` files, the current event date included, and deletes the files it replaced
once their grace has passed (the child waits for it). A child rather than a thread: the
merge runs off the receive path and out of the worker's memory (DuckDB never loads in the
worker), and a stop kills it safely (a compaction killed at any step leaves a valid
warehouse: consumer/maintenance/compaction.py). Several workers on one warehouse take
turns through the compaction lock; a round that finds it held does nothing, and the next
interval tries again whether or not the worker committed since.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import Callable

from consumer.clock import mono_us
from consumer.config import CompactionSettings
from consumer.tuning import child_environment

log = logging.getLogger("amlwh.worker")
BUSY = b"another compaction of"  # what `amlwh compact` says when it finds the lock held


class BackgroundCompaction:
    def __init__(self, warehouse: Path | str, compression: str, settings: CompactionSettings,
                 commits: Callable[[], int], on_round: Callable[[float, bool], None] | None = None,
                 warehouse_env: dict[str, str] | None = None) -> None:
        """`warehouse`: its folder or URL; `warehouse_env`: the child's other [warehouse] and
        [identity] settings (a remote warehouse's credentials, cache and work folders)."""
        self.warehouse = str(warehouse)
        self.warehouse_env = warehouse_env or {}
        self.compression = compression
        self.settings = settings
        self.commits = commits  # how many commits the worker made so far
        self.on_round = on_round  # (seconds, succeeded) of each finished round, for the metrics
        self.rounds = 0
        self.busy = False  # the last round found another compaction running and did nothing
        self._child: asyncio.subprocess.Process | None = None
        self._stopped = False

    async def run_forever(self) -> None:
        seen = self.commits()
        while True:
            await asyncio.sleep(self.settings.interval_s)
            if self.commits() == seen:
                continue  # nothing new since the last round
            committed = self.commits()
            await self.run_once()
            if not self.busy:  # a round that found another running retries next interval:
                seen = committed  # its files would otherwise wait for this worker's next commit

    async def run_once(self) -> int:
        """One `amlwh compact` child, to its end; returns its exit status."""
        s = self.settings
        env = child_environment({
            **self.warehouse_env,
            "AMLWH_WAREHOUSE__PATH": self.warehouse,
            "AMLWH_WAREHOUSE__COMPRESSION": self.compression,
            "AMLWH_COMPACTION__GRACE_S": str(s.grace_s),
            "AMLWH_COMPACTION__MEMORY_LIMIT": s.memory_limit,
        })
        started = mono_us()
        self._child = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "consumer", "--config", os.devnull, "compact",
            "--min-files", str(s.min_files), "--wait-for-grace", "--quiet", env=env,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        try:
            _, err = await self._child.communicate()
        finally:
            child, self._child = self._child, None
        self.rounds += 1
        self.busy = child.returncode == 0 and BUSY in err
        if self._stopped:
            return child.returncode  # killed by stop(): nothing to report
        if self.on_round is not None:
            self.on_round((mono_us() - started) / 1e6, child.returncode == 0)
        if self.busy:
            log.info("background compaction round %d of %s found another compaction running; "
                     "trying again in %gs", self.rounds, self.warehouse, s.interval_s)
        elif child.returncode == 0:
            log.info("background compaction round %d of %s done", self.rounds, self.warehouse)
        else:
            log.warning("background compaction of %s exited %s: %s (the warehouse stays valid; "
                        "the next round tries again)", self.warehouse, child.returncode,
                        err.decode(errors="replace").strip()[-500:])
        return child.returncode

    def stop(self) -> None:
        """Kill a running child: what it did so far is safe, the rest waits for a next run."""
        self._stopped = True
        if self._child is not None and self._child.returncode is None:
            self._child.kill()
