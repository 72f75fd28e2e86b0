"""A live Worker run inside the test's event loop against the local hub and Azurite, for
tests that need to reach into it (patch a step, hold the writer, read its claims) rather
than watch a process from outside (tests/support/worker.py). No test logic here."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

from consumer.clock import wall_us
from consumer.config import Settings
from consumer.live.worker import Worker
from consumer.storage.warehouse import ParquetWarehouse
from transforms.decode import DecodeRules

# short intervals, as tests/support/worker.py FAST gives the worker process
FAST_EVENTHUB = {"load_balancing_interval_s": 1.0, "ownership_expiration_s": 6.0, "max_wait_time_s": 0.5}
FAST_WRITER = {"max_seconds": 0.5}


def live_settings(local_hub, hub: str, azurite, container: str, warehouse: Path, *,
                  eventhub: dict | None = None, ordering: dict | None = None,
                  writer: dict | None = None) -> Settings:
    """Settings for a worker on `hub` with checkpoints in `container` and a fresh warehouse.
    [ordering] max_lateness_s defaults to 0 here: events pass straight through the reorder
    buffer unless a test holds them."""
    return Settings(
        eventhub={"connection_string": local_hub.connection_string(hub), **FAST_EVENTHUB, **(eventhub or {})},
        checkpoint={"connection_string": azurite.connection_string, "container": container},
        warehouse={"path": str(warehouse)},
        writer={**FAST_WRITER, **(writer or {})},
        ordering={"max_lateness_s": 0, **(ordering or {})},
    )


def build_worker(settings: Settings, *, stop_when_idle_s: float | None = None) -> Worker:
    """A Worker with the sink and rules `amlwh run` gives it (consumer/commands.py)."""
    sink = ParquetWarehouse(settings.warehouse.local_path, compression=settings.warehouse.compression, now_us=wall_us)
    rules = DecodeRules.build(list(settings.filter.workspaces), list(settings.filter.event_types))
    return Worker(settings, sink, rules, stop_when_idle_s=stop_when_idle_s)


class InProcessWorker:
    """`async with InProcessWorker(settings) as w:` runs `w.worker.run()` as a task;
    `await w.outcome(timeout)` is what run() ended with (its return code or the exception
    it raised), failing the test if it is still running then. Leaving the block stops a
    worker still running (and fails if it does not stop within `stop_timeout`)."""

    def __init__(self, settings: Settings, *, stop_when_idle_s: float | None = None,
                 stop_timeout: float = 30.0) -> None:
        self.worker = build_worker(settings, stop_when_idle_s=stop_when_idle_s)
        self.stop_timeout = stop_timeout
        self.task: asyncio.Task | None = None

    async def __aenter__(self) -> Self:
        self.task = asyncio.create_task(self.worker.run())
        return self

    async def __aexit__(self, *exc) -> None:
        if not self.task.done():
            self.worker.request_stop()
            done, _ = await asyncio.wait({self.task}, timeout=self.stop_timeout)
            if not done:
                self.task.cancel()
                await asyncio.gather(self.task, return_exceptions=True)
                if exc[0] is None:
                    raise AssertionError(f"the worker did not stop within {self.stop_timeout}s")
        else:
            self.task.exception()  # retrieved: outcome() may not have been called

    async def outcome(self, timeout: float) -> int | BaseException:
        """Wait for run() to end by itself: its return value, or the exception it raised."""
        done, _ = await asyncio.wait({self.task}, timeout=timeout)
        assert done, f"the worker was still running after {timeout}s"
        return self.task.exception() or self.task.result()

    async def stop(self, timeout: float = 30.0) -> int | BaseException:
        """SIGTERM's path: request_stop, then what run() ended with."""
        self.worker.request_stop()
        return await self.outcome(timeout)

    def claimed(self) -> set[str]:
        return set(self.worker.claims)


async def wait_until(predicate: Callable[[], Any], timeout: float, what: str, *,
                     interval: float = 0.05, task: asyncio.Task | None = None) -> Any:
    """Poll `predicate` (a plain or async function) on the loop until it returns something
    truthy; fail after `timeout`, or at once when `task` (a worker's run) ended."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if task is not None and task.done():
            raise AssertionError(f"the worker ended ({task.exception() or task.result()!r}) while waiting for {what}")
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        await asyncio.sleep(interval)


async def checkpoints(local_hub, hub: str, azurite, container: str,
                      consumer_group: str = "$Default") -> dict[str, int]:
    """Partition id -> checkpointed sequence number, read with the SDK's BlobCheckpointStore
    the worker writes them with."""
    from azure.eventhub.extensions.checkpointstoreblobaio import BlobCheckpointStore

    store = BlobCheckpointStore.from_connection_string(azurite.connection_string, container)
    async with store:
        found = await store.list_checkpoints(f"{local_hub.host}:{local_hub.port}", hub, consumer_group)
    return {c["partition_id"]: c["sequence_number"] for c in found}


def committed_event_ids(warehouse: Path) -> list[str]:
    """event_id of every committed raw_events row (duplicates included, provisional files not)."""
    import duckdb

    files = list(Path(warehouse).glob("raw_events/*/*.parquet"))
    if not files:
        return []
    con = duckdb.connect()
    try:
        return [r[0] for r in con.execute(
            "SELECT event_id FROM read_parquet(?) ORDER BY event_id", [[str(f) for f in files]]).fetchall()]
    finally:
        con.close()
