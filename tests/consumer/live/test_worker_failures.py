"""The live worker's failure paths, run in-process (tests/support/inprocess.py) against the local
hub and Azurite: a batch that fails in processing, a failed or cancelled decode, a dead timer,
a failing receive task, backpressure, and the provisional files (settled, also for a lost
partition, and failing to write).

A failure in a batch's path stops the worker (run() raises it), names the partition in an
error log, and checkpoints nothing of the failed batch: checkpoints are read back from Azurite
with the SDK's BlobCheckpointStore, and a restarted worker reads the batch again. Failures
are injected by patching one step (the body reader, the decoder, the decode thread's futures,
the idle release, the SDK's receive) or, for the warehouse, by a file in a folder's place.
The last section holds two bugs these paths showed (both fixed since).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import shutil
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from azure.eventhub import EventData
from azure.eventhub.aio import EventHubConsumerClient, EventHubProducerClient
from azure.eventhub.amqp import AmqpAnnotatedMessage

import consumer.live.batch_intake as batch_intake_module
import consumer.live.worker as worker_module
from consumer.errors import WarehouseWriteError
from consumer.live.batch_intake import BatchIntake
from consumer.live.partition import PartitionPipeline
from consumer.live.provisional import PROVISIONAL_TABLES, ProvisionalFiles
from consumer.query.connection import connect
from consumer.storage.layout import ANCHOR, PROVISIONAL_DIR
from devstack.sdk_helpers import send_events
from tests.support.events import run_event
from tests.support.inprocess import (
    InProcessWorker,
    checkpoints,
    committed_event_ids,
    live_settings,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

POISON = b"boom-"  # run ids starting with this make the patched step fail
PROCESSING_FAILED = "partition 0: processing failed; stopping without checkpointing it"


class Boom(Exception):
    """The failure the tests inject."""


def bodies(prefix: str, count: int, *, at: str = "2025-01-01T10:00:00Z") -> list[bytes]:
    return [run_event(f"{prefix}{i}", "Running", at, event_id=f"{prefix}{i}") for i in range(count)]


# partition 0's second batch in the failure tests: sequences 3-5, the first one poisoned
POISONED_BATCH = bodies(POISON.decode(), 1) + bodies("after-", 2)


def has_poison(messages) -> bool:
    return any(POISON in m.body for m in messages)


@pytest.fixture
def hub1(make_hub) -> str:
    return make_hub(1)


@pytest.fixture
def settings_for(local_hub, hub1, azurite, checkpoint_container, tmp_path):
    """settings_for(**sections) -> Settings on the one-partition hub `hub1`."""
    return functools.partial(live_settings, local_hub, hub1, azurite, checkpoint_container, tmp_path / "wh")


@pytest.fixture
def cp(local_hub, hub1, azurite, checkpoint_container):
    """await cp() -> {partition id: checkpointed sequence number} for `hub1`."""
    return functools.partial(checkpoints, local_hub, hub1, azurite, checkpoint_container)


async def checkpointed_first_batch(w: InProcessWorker, cs: str, cp, count: int = 3) -> list[bytes]:
    """Send `count` good events to partition 0 and wait until the worker checkpointed the last."""
    first = bodies("ok-", count)
    await send_events(cs, first, partition_id="0")
    await wait_until(lambda: _at(cp, count - 1), 30, f"checkpoint at sequence {count - 1}", task=w.task)
    return first


async def run_into_the_poisoned_batch(local_hub, hub: str, settings, cp) -> tuple[list[bytes], object]:
    """Run a worker until it ends by itself: a first batch of good events committed and
    checkpointed, then POISONED_BATCH. Returns the first batch and what run() ended with."""
    cs = local_hub.connection_string(hub)
    async with InProcessWorker(settings) as w:
        first = await checkpointed_first_batch(w, cs, cp)
        await send_events(cs, POISONED_BATCH, partition_id="0")
        return first, await w.outcome(30)


async def _at(cp, sequence: int) -> bool:
    return (await cp()).get("0") == sequence


def error_logs(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "amlwh.worker" and r.levelno >= logging.ERROR]


async def assert_redelivered(settings, warehouse, expected: list[str]) -> None:
    """A fresh worker resumes from the checkpoint, re-reads the failed batch and stores it."""
    async with InProcessWorker(settings, stop_when_idle_s=2) as again:
        assert await again.outcome(60) == 0
    assert sorted(set(committed_event_ids(warehouse))) == sorted(expected)


# ---------------------------------------------------------------- failures in a batch's path


async def test_a_batch_that_fails_in_processing_stops_the_worker_without_checkpointing_it(
        local_hub, hub1, settings_for, cp, monkeypatch, caplog):
    """An exception inside `_process` (here the body reader) is not left to the SDK, which would
    go on with the next batch and checkpoint past this one: the worker stops."""
    real_body = batch_intake_module.event_body

    def reading(event):
        body = real_body(event)
        if POISON in body:
            raise Boom("cannot read the body")
        return body

    monkeypatch.setattr(batch_intake_module, "event_body", reading)
    caplog.set_level(logging.INFO, logger="amlwh")
    _, outcome = await run_into_the_poisoned_batch(local_hub, hub1, settings_for(), cp)
    assert isinstance(outcome, Boom), outcome
    assert PROCESSING_FAILED in error_logs(caplog)
    assert await cp() == {"0": 2}  # the failed batch (sequences 3-5) is not checkpointed
    assert "stopped: flushed" not in caplog.text  # no graceful final flush and checkpoint


async def test_a_failed_decode_stops_the_worker_and_a_restart_reads_the_batch_again(
        local_hub, hub1, settings_for, cp, monkeypatch, caplog, tmp_path):
    """`pipeline.accept` raising in the decode thread: the batch's in_flight count stays up, so no
    flush takes the partition's frontier, and the worker stops; a restart re-reads the batch."""
    real_accept = PartitionPipeline.accept
    armed = {"on": True}

    def accept(self, messages, now_us, ingested_us):
        if armed["on"] and has_poison(messages):
            raise Boom("decoder bug")
        return real_accept(self, messages, now_us, ingested_us)

    monkeypatch.setattr(PartitionPipeline, "accept", accept)
    caplog.set_level(logging.INFO, logger="amlwh")
    first, outcome = await run_into_the_poisoned_batch(local_hub, hub1, settings_for(), cp)
    assert isinstance(outcome, Boom), outcome
    assert PROCESSING_FAILED in error_logs(caplog)
    assert await cp() == {"0": 2}
    warehouse = tmp_path / "wh"
    assert committed_event_ids(warehouse) == sorted(["ok-0", "ok-1", "ok-2"])

    armed["on"] = False  # the decoder fixed: the same batch goes through
    await assert_redelivered(settings_for(), warehouse, ["ok-0", "ok-1", "ok-2", "boom-0", "after-0", "after-1"])
    assert len(committed_event_ids(warehouse)) == len(first) + len(POISONED_BATCH)  # each stored once
    assert await cp() == {"0": 5}


async def test_a_cancelled_decode_stops_the_worker_without_checkpointing_its_batch(
        local_hub, hub1, settings_for, cp, monkeypatch, caplog):
    """The decode thread's future for a batch comes back cancelled (its work never ran): the
    worker cannot know the batch's rows, so it stops instead of carrying on without them."""

    class CancellingExecutor(concurrent.futures.ThreadPoolExecutor):
        def submit(self, fn, /, *args, **kwargs):
            if self._thread_name_prefix.startswith("amlwh-decode") and has_poison(args[1]):
                cancelled = concurrent.futures.Future()
                cancelled.cancel()
                return cancelled
            return super().submit(fn, *args, **kwargs)

    monkeypatch.setattr(worker_module, "ThreadPoolExecutor", CancellingExecutor)
    caplog.set_level(logging.INFO, logger="amlwh")
    _, outcome = await run_into_the_poisoned_batch(local_hub, hub1, settings_for(), cp)
    assert isinstance(outcome, RuntimeError) and str(outcome) == "decoding cancelled", outcome
    assert PROCESSING_FAILED in error_logs(caplog)
    assert await cp() == {"0": 2}


async def test_a_dead_timer_stops_the_worker_without_a_final_checkpoint(
        local_hub, hub1, settings_for, cp, monkeypatch, caplog):
    """The timer task (idle releases, flushes) raising: nothing would release or flush any
    more, so the worker stops, and as after any failure it does not drain, flush and
    checkpoint what its buffers hold."""
    real_accept = PartitionPipeline.accept

    def accept(self, messages, now_us, ingested_us):
        if has_poison(messages):
            self.poisoned = True
        return real_accept(self, messages, now_us, ingested_us)

    real_tick = PartitionPipeline.tick

    def tick(self, now_us):
        if getattr(self, "poisoned", False):
            raise Boom("idle release failed")
        return real_tick(self, now_us)

    monkeypatch.setattr(PartitionPipeline, "accept", accept)
    monkeypatch.setattr(PartitionPipeline, "tick", tick)
    caplog.set_level(logging.INFO, logger="amlwh")
    cs = local_hub.connection_string(hub1)
    # 30 s lateness: the watermark releases the first three at once, holds the rest
    first = bodies("ok-", 3, at="2025-01-01T10:00:00Z") + bodies("held-", 1, at="2025-01-01T10:05:00Z")
    async with InProcessWorker(settings_for(ordering={"max_lateness_s": 30})) as w:
        await send_events(cs, first, partition_id="0")
        await wait_until(lambda: _at(cp, 2), 30, "checkpoint at sequence 2", task=w.task)
        # held in the buffer, not yet checkpointable; the timer dies at its next tick
        await send_events(cs, bodies(POISON.decode(), 2, at="2025-01-01T10:05:10Z"), partition_id="0")
        outcome = await w.outcome(30)
    assert isinstance(outcome, Boom), outcome
    assert "worker timer failed; stopping" in error_logs(caplog)
    assert await cp() == {"0": 2}  # a graceful stop would have drained and checkpointed sequence 5
    assert "stopped: flushed" not in caplog.text


async def test_a_failing_receive_task_is_raised_by_run_after_a_graceful_flush(
        local_hub, hub1, settings_for, cp, monkeypatch, tmp_path):
    """The SDK's receive task ending with an exception ends run() with it (the CLI then exits
    non-zero with the traceback). Every batch received before it had been processed without
    error, so the worker stops as on SIGTERM: its rows are flushed and checkpointed, no further
    than they are durable."""
    real_client = worker_module.consumer_client
    fail = asyncio.Event()
    inner: list[asyncio.Task] = []

    def client_whose_receive_fails(*args, **kwargs):
        client = real_client(*args, **kwargs)
        real_receive = client.receive_batch

        async def receive_batch(*a, **kw):
            inner.append(asyncio.create_task(real_receive(*a, **kw)))
            await fail.wait()
            raise Boom("receive failed")

        client.receive_batch = receive_batch
        return client

    monkeypatch.setattr(worker_module, "consumer_client", client_whose_receive_fails)
    cs = local_hub.connection_string(hub1)
    # 30 s lateness: three released at once, the fourth held until the stop drains it
    first = bodies("ok-", 3, at="2025-01-01T10:00:00Z") + bodies("held-", 1, at="2025-01-01T10:05:00Z")
    async with InProcessWorker(settings_for(ordering={"max_lateness_s": 30})) as w:
        await send_events(cs, first, partition_id="0")
        await wait_until(lambda: _at(cp, 2), 30, "checkpoint at sequence 2", task=w.task)
        fail.set()
        outcome = await w.outcome(30)
    await asyncio.wait_for(asyncio.gather(*inner), 10)  # the real receive ended with the client
    assert isinstance(outcome, Boom), outcome
    assert committed_event_ids(tmp_path / "wh") == ["held-0", "ok-0", "ok-1", "ok-2"]
    assert await cp() == {"0": 3}  # the drained event too, once durable


async def test_backpressure_holds_batches_back_while_the_sink_is_full_until_a_flush_drains_it(
        local_hub, hub1, settings_for, tmp_path, monkeypatch):
    """A commit stuck in the writer thread (a slow disk) while rows keep landing: once the sink
    holds 2 x max_rows rows, on_event_batch hands no more batches to the decode thread (the SDK
    waits on the callback, so it stops receiving too); the commit finishing lets a flush drain
    the sink and everything arrives."""
    max_rows = 10
    total = 200
    entered = []  # on_event_batch calls, and how many of them returned
    returned = []
    decoded = []  # messages handed to the decode thread
    in_commit, finish_commit = threading.Event(), threading.Event()

    async with InProcessWorker(settings_for(writer={"max_rows": max_rows}, eventhub={"max_batch_size": 5})) as w:
        worker, sink = w.worker, w.worker.sink
        real_commit, real_batch, real_decode = sink.commit, BatchIntake.on_event_batch, BatchIntake._decode

        def slow_commit(batch):
            if batch.tables and not finish_commit.is_set():
                in_commit.set()
                finish_commit.wait(60)
            return real_commit(batch)

        async def on_event_batch(intake, context, events):
            entered.append(len(events))
            try:
                await real_batch(intake, context, events)
            finally:
                returned.append(len(events))

        def decode(pipeline, messages, now_us, ingested_us):
            decoded.append(len(messages))
            return real_decode(pipeline, messages, now_us, ingested_us)

        sink.commit = slow_commit  # the SDK callback and the decode step: patched before run() starts
        monkeypatch.setattr(BatchIntake, "on_event_batch", on_event_batch)
        monkeypatch.setattr(BatchIntake, "_decode", staticmethod(decode))
        try:
            await wait_until(lambda: w.claimed() == {"0"}, 30, "partition 0 claimed", task=w.task)
            await send_events(local_hub.connection_string(hub1), bodies("e-", total), partition_id="0")
            await wait_until(lambda: in_commit.is_set() and sink.pending_rows >= 2 * max_rows, 30,
                             "a stuck commit and a full sink", task=w.task)
            pipeline = worker.claims["0"].pipeline
            # batches already past the check reach the sink; the next one waits at the check
            await wait_until(lambda: pipeline.in_flight == 0, 10, "no batch in the decode thread")
            held = sum(decoded)
            await asyncio.sleep(2.0)
            assert sum(decoded) == held < total  # nothing more went to the decoder...
            assert len(entered) == len(returned) + 1  # ...while one batch waits in on_event_batch
            assert sink.pending_rows >= 2 * max_rows  # still full: no flush took it
        finally:
            finish_commit.set()
        await wait_until(lambda: len(committed_event_ids(tmp_path / "wh")) == total, 30,
                         "every event committed", task=w.task)
        assert await w.stop() == 0
    assert sum(decoded) == total
    assert sorted(set(committed_event_ids(tmp_path / "wh"))) == sorted(f"e-{i}" for i in range(total))


# ---------------------------------------------------------------- provisional files


def live_at(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


def shown(warehouse: Path) -> dict[str, set[str]]:
    """Provisional version (file stem) -> event ids it shows, from its raw_events file."""
    out = {}
    for path in (warehouse / PROVISIONAL_DIR / "raw_events").glob("*.parquet"):
        if path.name == ANCHOR:
            continue
        try:
            out[path.stem] = set(pq.read_table(path, columns=["event_id"]).column("event_id").to_pylist())
        except FileNotFoundError:
            pass  # deleted meanwhile
    return out


def version_files(warehouse: Path, stems: set[str]) -> list[Path]:
    """The files (of every provisional table) of these versions."""
    return [p for table in PROVISIONAL_TABLES for p in (warehouse / PROVISIONAL_DIR / table).glob("*.parquet")
            if p.stem in stems]


def versions_showing(warehouse: Path, ids: set[str]) -> set[str] | None:
    """The versions that show these events (a batch may reach the buffer in pieces, so one
    version or several), once all of them are shown."""
    versions = shown(warehouse)
    stems = {stem for stem, shows in versions.items() if shows & ids}
    return stems if ids <= set().union(*(versions[s] for s in stems)) else None


@pytest.fixture
def short_grace(monkeypatch):
    """Retired provisional versions are deleted 0.5 s after retirement (15 s by default)."""
    monkeypatch.setattr(worker_module, "ProvisionalFiles", functools.partial(ProvisionalFiles, grace_s=0.5))


async def test_provisional_versions_are_retired_and_deleted_once_their_events_are_committed(
        local_hub, hub1, settings_for, tmp_path, short_grace):
    """Events the reorder buffer holds are shown in a provisional version at a flush; once the
    watermark releases them and a flush commits them, the version is retired and its files
    are deleted after the grace. At no moment is an event in neither place."""
    warehouse = tmp_path / "wh"
    cs = local_hub.connection_string(hub1)
    first = {f"a-{i}" for i in range(3)}
    async with InProcessWorker(settings_for(ordering={"max_lateness_s": 3})) as w:
        await send_events(cs, [run_event(e, "Running", live_at(0), event_id=e) for e in sorted(first)],
                          partition_id="0")
        stems = await wait_until(lambda: versions_showing(warehouse, first), 30, "the events shown", task=w.task)
        assert not committed_event_ids(warehouse)  # held in the buffer, not committed
        # 10 s later in event time: the watermark passes the first three, the new ones are held
        # (and keep flushes coming while they are)
        await send_events(cs, [run_event(f"b-{i}", "Running", live_at(10), event_id=f"b-{i}") for i in range(2)],
                          partition_id="0")

        def gone():
            listed = version_files(warehouse, stems)  # listed before the commits are read
            committed = set(committed_event_ids(warehouse))
            assert listed or first <= committed, "a version was deleted before its events were committed"
            return not listed

        await wait_until(gone, 30, f"versions {sorted(stems)} deleted", task=w.task)
        assert first <= set(committed_event_ids(warehouse))
        assert await w.stop() == 0
    assert sorted(committed_event_ids(warehouse)) == ["a-0", "a-1", "a-2", "b-0", "b-1"]
    assert shown(warehouse) == {}  # a graceful stop deletes every version


async def test_a_lost_partition_settles_its_shown_versions_and_their_files_go(
        local_hub, make_hub, azurite, checkpoint_container, tmp_path, short_grace, caplog):
    """A consumer with a higher owner level takes partition 0: the worker's receiver is
    disconnected and the SDK closes the partition (OWNERSHIP_LOST). The events it had shown
    are no longer its to commit, so the version showing them settles at the next flush and its
    files go, while partition 1's version stays; once the other consumer leaves, the worker
    reads partition 0 again and a graceful stop commits everything."""
    hub = make_hub(2)
    cs = local_hub.connection_string(hub)
    warehouse = tmp_path / "wh"
    lost, kept = {f"p0-{i}" for i in range(3)}, {"p1-0"}
    caplog.set_level(logging.INFO, logger="amlwh")
    settings = live_settings(local_hub, hub, azurite, checkpoint_container, warehouse,
                             ordering={"max_lateness_s": 60})  # nothing leaves a buffer by time here
    async with InProcessWorker(settings) as w:
        await wait_until(lambda: w.claimed() == {"0", "1"}, 30, "both partitions claimed", task=w.task)
        await send_events(cs, [run_event(e, "Running", live_at(0), event_id=e) for e in sorted(lost)],
                          partition_id="0")
        lost_stems = await wait_until(lambda: versions_showing(warehouse, lost), 30, "partition 0 shown",
                                      task=w.task)
        # sent once partition 0's events are shown: a later version shows this one alone
        await send_events(cs, [run_event(e, "Running", live_at(0), event_id=e) for e in kept], partition_id="1")
        kept_stems = await wait_until(lambda: versions_showing(warehouse, kept), 30, "partition 1 shown",
                                      task=w.task)
        assert not lost_stems & kept_stems
        thief = EventHubConsumerClient.from_connection_string(cs, consumer_group="$Default",
                                                             load_balancing_interval=0.5)
        taken = []

        async def on_event(_, event):
            taken.append(event)

        stealing = asyncio.create_task(thief.receive(on_event, partition_id="0", owner_level=1,
                                                     starting_position="-1"))
        try:
            await wait_until(lambda: "partition 0 closed (OWNERSHIP_LOST)" in caplog.text, 30,
                             "partition 0 closed", task=w.task)
            await wait_until(lambda: not version_files(warehouse, lost_stems), 10,
                             f"the lost partition's versions {sorted(lost_stems)} deleted", task=w.task)
            assert version_files(warehouse, kept_stems)  # partition 1's events are still buffered
            await wait_until(lambda: len(taken) == len(lost), 10, "the new owner reading them")
        finally:
            await thief.close()
            await asyncio.wait_for(stealing, 10)
        # back with the worker: it reads partition 0 again from the start and shows it again
        await wait_until(lambda: versions_showing(warehouse, lost), 30, "partition 0 shown again", task=w.task)
        assert await w.stop() == 0
    assert sorted(committed_event_ids(warehouse)) == sorted(lost | kept)
    assert shown(warehouse) == {}


async def test_a_failing_provisional_write_stops_the_worker_with_a_warehouse_error(
        local_hub, hub1, settings_for, cp, tmp_path, caplog):
    """A regular file where <warehouse>/_provisional/raw_events should be (it stops even root):
    the flush commits its rows, then cannot write the provisional version. The worker stops
    with a WarehouseWriteError that names the path and says what to do, checkpoints nothing of
    that flush (though its rows are durable), and once the file is moved away a restart stores
    the rest."""
    warehouse = tmp_path / "wh"
    cs = local_hub.connection_string(hub1)
    caplog.set_level(logging.INFO, logger="amlwh")
    settings = settings_for(ordering={"max_lateness_s": 30})
    async with InProcessWorker(settings) as w:
        # a-0 and a-1 leave the buffer at once and are checkpointed; held-0 (sequence 2) is held
        await send_events(cs, bodies("a-", 2, at="2025-01-01T10:00:00Z")
                          + bodies("held-", 1, at="2025-01-01T10:05:00Z"), partition_id="0")
        await wait_until(lambda: _at(cp, 1), 30, "checkpoint at sequence 1", task=w.task)
        folder = warehouse / PROVISIONAL_DIR / "raw_events"
        shutil.rmtree(folder)
        folder.write_text("not a folder\n")
        # b-0 releases held-0 and is held itself: the next flush commits held-0 (its frontier is
        # sequence 2), then fails to show b-0 in a provisional version
        await send_events(cs, bodies("b-", 1, at="2025-01-01T10:06:00Z"), partition_id="0")
        outcome = await w.outcome(30)
    assert isinstance(outcome, WarehouseWriteError), outcome
    message = str(outcome)
    assert f"cannot write to the warehouse at {folder}" in message, message
    assert f"[warehouse] path ({warehouse})" in message and "run again" in message, message
    assert committed_event_ids(warehouse) == ["a-0", "a-1", "held-0"]  # durable...
    assert await cp() == {"0": 1}  # ...yet not checkpointed: nothing of the failed flush is
    assert not error_logs(caplog)  # said as what to fix, not as a bug with a traceback

    folder.unlink()
    await assert_redelivered(settings, warehouse, ["a-0", "a-1", "b-0", "held-0"])
    assert len(committed_event_ids(warehouse)) == 4  # held-0, read again, was skipped
    assert await cp() == {"0": 3}


# ---------------------------------------------------------------- bugs found (expected to fail until fixed)


async def test_a_message_whose_amqp_body_is_not_data_is_dead_lettered_instead_of_stopping_the_worker(
        local_hub, hub1, settings_for, cp, tmp_path):
    """Any producer can put an AMQP value body on the hub (here the SDK's AmqpAnnotatedMessage).
    It is not an Event Grid event: it belongs in dead_letters like any other unreadable body,
    not in a crash loop that holds the partition back for good."""
    producer = EventHubProducerClient.from_connection_string(local_hub.connection_string(hub1))
    async with producer:
        batch = await producer.create_batch(partition_id="0")
        batch.add(EventData(bodies("ok-", 1)[0]))
        batch.add(AmqpAnnotatedMessage(value_body=42))
        batch.add(EventData(bodies("ok-", 2)[1]))
        await producer.send_batch(batch)
    async with InProcessWorker(settings_for(), stop_when_idle_s=2) as w:
        outcome = await w.outcome(60)
    assert outcome == 0, repr(outcome)
    con = connect(tmp_path / "wh")
    try:
        assert con.execute("SELECT sequence_number FROM dead_letters").fetchall() == [(1,)]
    finally:
        con.close()
    assert await cp() == {"0": 2}


async def test_an_idle_worker_deletes_retired_versions_after_the_grace(
        local_hub, hub1, settings_for, cp, tmp_path, short_grace):
    warehouse = tmp_path / "wh"
    ids = {f"a-{i}" for i in range(3)}
    async with InProcessWorker(settings_for(ordering={"max_lateness_s": 1})) as w:
        await send_events(local_hub.connection_string(hub1),
                          [run_event(e, "Running", live_at(0), event_id=e) for e in sorted(ids)], partition_id="0")
        stems = await wait_until(lambda: versions_showing(warehouse, ids), 30, "the events shown", task=w.task)
        await wait_until(lambda: _at(cp, 2), 30, "all three committed and checkpointed", task=w.task)
        assert ids <= set(committed_event_ids(warehouse))
        # nothing else arrives: the versions were retired by the committing flush, 0.5 s grace
        await wait_until(lambda: not version_files(warehouse, stems), 5, "retired versions deleted", task=w.task)
        assert await w.stop() == 0
