"""The live worker's background compaction rounds (live/compaction_timer.py), with the real
`amlwh compact` child on a real warehouse."""

from __future__ import annotations

import asyncio

import pytest

from consumer.config import CompactionSettings
from consumer.live.compaction_timer import BackgroundCompaction
from consumer.maintenance.compaction import maintenance_lock
from tests.support.events import run_event
from tests.support.warehouse import committed_files, store_copies

pytestmark = pytest.mark.integration


def test_a_round_that_finds_the_lock_held_tries_again_without_waiting_for_a_commit(tmp_path):
    root = tmp_path / "wh"
    bodies = [run_event(f"r{i}", "Running", "2025-01-01T10:00:00Z") for i in range(5)]
    store_copies(root, bodies, 1)
    store_copies(root, bodies, 2)  # two files in each partition: worth a merge
    counts = iter([0])  # one commit after the timer started, none after
    rounds: list[bool] = []
    background = BackgroundCompaction(root, "zstd", CompactionSettings(interval_s=0.2, min_files=2, grace_s=0),
                                      lambda: next(counts, 1), lambda seconds, ok: rounds.append(ok))

    async def scenario() -> None:
        task = asyncio.create_task(background.run_forever())
        try:
            with maintenance_lock(root) as held:  # another compaction is running
                assert held
                while background.rounds < 1:
                    await asyncio.sleep(0.05)
                assert background.busy and len(committed_files(root)["run_events"]) == 2
            while background.rounds < 2:  # the worker committed nothing since: it tries again
                await asyncio.sleep(0.05)
            assert not background.busy
            await asyncio.sleep(1.0)  # and then rests until the next commit
            assert background.rounds == 2
        finally:
            background.stop()
            task.cancel()

    asyncio.run(asyncio.wait_for(scenario(), 30))
    assert rounds == [True, True]
    assert len(committed_files(root)["run_events"]) == 1 and len(committed_files(root)["raw_events"]) == 1
