"""Whether a run of the worker goes on: what every part of it checks before it acts.

A run ends in one of two ways: `request_stop` (SIGTERM, SIGINT, --stop-when-idle), after
which the worker drains, flushes and checkpoints (`stopping`), or `fail`, after which
nothing more is acknowledged (`fatal`). `last_activity_us` is when the last batch arrived
(or a partition was claimed): the flush cycle flushes sooner once it is old, and
--stop-when-idle stops on it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from consumer.errors import WarehouseWriteError
from consumer.live.spill import SpillError

log = logging.getLogger("amlwh.worker")


class RunState:
    """One run's stop request, stop and failure flags and last activity. Collaborator:
    `explain(exc)` (the warehouse's), which says a disk error under the warehouse as what
    to fix."""

    def __init__(self, explain: Callable[[OSError], str]) -> None:
        self.explain = explain
        self.stop_requested = asyncio.Event()
        self.stopping = False  # the graceful stop began: batches are no longer taken
        self.fatal: BaseException | None = None
        self.last_activity_us = 0  # monotonic

    @property
    def halted(self) -> bool:
        """Stopping or failed: take no batch, release and flush nothing on one's own."""
        return self.stopping or self.fatal is not None

    def request_stop(self) -> None:
        self.stop_requested.set()

    def fail(self, exc: BaseException, what: str, *, partition: str | None = None) -> None:
        """Stop the run for `exc`. Trouble with the disk under the warehouse (a flush, the
        spill files) is said as what to fix, without a traceback; anything else is a bug
        and is logged with one (and with the partition it concerns, when there is one)."""
        if isinstance(exc, SpillError):
            exc = WarehouseWriteError(self.explain(exc))
        elif not isinstance(exc, WarehouseWriteError):
            log.error("%s", what, exc_info=exc, extra={"partition": partition})
        self.fatal = self.fatal or exc
        self.stop_requested.set()
