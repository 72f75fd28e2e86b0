"""The live worker under faults: SIGKILLs while the stream flows, a hub that drops every
connection and a storage outage, a graceful stop during a storage outage, three workers sharing
eight partitions (one killed), and an unwritable warehouse.

Every test runs the real `amlwh run` process(es) against the local hub and Azurite, sends a
generated stream with the real SDK producer, and compares the views with the truth the
generator recorded (devstack.synth `Stream.runs`) and with counts of what was sent: "nothing lost,
nothing counted twice" = the runs view equals the truth, the deduplicated raw_events view holds
exactly the distinct events sent, and dead_letters holds exactly the poison bodies.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from azure.eventhub import EventData
from azure.eventhub.aio import EventHubProducerClient

from consumer.query.connection import connect
from devstack.azurite import Azurite
from devstack.partition_key import partition_for_key
from devstack.sdk_helpers import send_events
from devstack.synth import disorder, generate, poison_lines
from tests.support.worker import (FAST, claimed_partitions, log_tail, start_worker, stop_worker,
                                  stored_event_count, wait_for_claims, wait_until, worker_env)

pytestmark = pytest.mark.integration

OWNERSHIP_EXPIRY_S = float(FAST["AMLWH_EVENTHUB__OWNERSHIP_EXPIRATION_S"])
# CHAOS_SEED=<n> replays other kill moments and victims (the seed is printed with the results)
SEED = int(os.environ.get("CHAOS_SEED", "4242"))
CHECKPOINT_FAILED = re.compile(r"checkpoint of partition (\d+) at offset (\d+) sequence (\d+) failed")


# ---------------------------------------------------------------- the stream and its truth


class Workload:
    """A generated stream (shuffled, with redelivered duplicates) plus poison bodies, cut in
    slices; the expectation is computed from the generator, never from the warehouse."""

    def __init__(self, runs: int, seed: int, slices: int):
        self.stream = generate(runs, seed=seed, payload_bytes=600)
        bodies = disorder(self.stream.bodies, seed=seed + 1)
        self.poison = list(poison_lines(random.Random(seed)))
        self.distinct = len(set(bodies))  # one event per body (single objects or 1-element arrays)
        assert self.distinct == len(self.stream.bodies)  # the copies are exact redeliveries
        messages = bodies[:]
        # the poison bodies go into the middle of the stream, not at its end
        for i, body in enumerate(self.poison):
            messages.insert(len(messages) * (i + 1) // (len(self.poison) + 1), body)
        self.messages = messages
        size = -(-len(messages) // slices)
        self.slices = [messages[i:i + size] for i in range(0, len(messages), size)]

    def expected_runs(self) -> dict:
        return {run_id: (t.status, t.started_us, t.ended_us) for run_id, t in self.stream.runs.items()}


def partition_keys(partitions: int) -> list[str]:
    """One partition key per partition id (by the hub's hash), index = partition id."""
    ids = [str(i) for i in range(partitions)]
    keys: dict[str, str] = {}
    for i in itertools.count():
        keys.setdefault(partition_for_key(f"k{i}", ids), f"k{i}")
        if len(keys) == partitions:
            return [keys[pid] for pid in ids]


async def send_spread(connection_string: str, bodies: list[bytes], partitions: int) -> None:
    """Send bodies round robin over all partitions with one producer client. Partition keys,
    not ids: the SDK sends keyed batches over one link, while each partition id costs a link."""
    keys = partition_keys(partitions)
    producer = EventHubProducerClient.from_connection_string(connection_string)
    async with producer:
        for n, key in enumerate(keys):
            batch = await producer.create_batch(partition_key=key)
            for body in bodies[n::partitions]:
                try:
                    batch.add(EventData(body))
                except ValueError:  # batch full
                    await producer.send_batch(batch)
                    batch = await producer.create_batch(partition_key=key)
                    batch.add(EventData(body))
            if len(batch):
                await producer.send_batch(batch)


class Sender(threading.Thread):
    """Sends the slices with the real SDK producer (a new client per slice), pausing between
    them, so the stream flows while the test injects faults. Each slice is spread round robin
    over all partitions (one keyed batch each), so every partition is busy all along. `sent` counts
    finished slices."""

    def __init__(self, connection_string: str, slices: list[list[bytes]], pause_s: float, partitions: int,
                 hold_last: int = 0):
        super().__init__(daemon=True)
        self.connection_string = connection_string
        self.slices = slices
        self.pause_s = pause_s
        self.partitions = partitions
        self.sent = 0
        self.error: BaseException | None = None
        self._changed = threading.Condition()
        self.hold_last = hold_last  # the last slices wait for release(): the stream outlasts the faults
        self._released = threading.Event()

    def run(self) -> None:
        try:
            for n, part in enumerate(self.slices):
                if n == len(self.slices) - self.hold_last and not self._released.wait(120):
                    raise TimeoutError("never released")
                asyncio.run(send_spread(self.connection_string, part, self.partitions))
                with self._changed:
                    self.sent += 1
                    self._changed.notify_all()
                if self.sent < len(self.slices):
                    time.sleep(self.pause_s)
        except BaseException as exc:  # reported by finish()
            self.error = exc
            with self._changed:
                self._changed.notify_all()

    def release(self) -> None:
        self._released.set()

    def wait_sent(self, count: int, timeout: float = 60) -> None:
        with self._changed:
            assert self._changed.wait_for(lambda: self.sent >= count or self.error, timeout), \
                f"only {self.sent} slice(s) sent"
        assert self.error is None, self.error

    def finish(self, timeout: float = 120) -> None:
        self.join(timeout)
        assert not self.is_alive(), "the sender did not finish"
        assert self.error is None, f"sending failed: {self.error!r}"
        assert self.sent == len(self.slices)


# ---------------------------------------------------------------- reading the results


def _us(ts):
    return None if ts is None else round(ts.timestamp() * 1e6)


def results(warehouse: Path) -> dict:
    """What the views say (plus the raw stored row count, to see the redeliveries)."""
    if not (warehouse / "raw_events").is_dir():
        return {"events": 0, "stored": 0, "dead": 0, "runs": {}}
    con = connect(warehouse)
    try:
        runs = con.execute("SELECT run_id, status, started_at, ended_at FROM runs").fetchall()
        return {
            "events": con.execute("SELECT count(*) FROM raw_events").fetchone()[0],
            "stored": con.execute("SELECT count(*) FROM store.raw_events").fetchone()[0],
            "dead": con.execute("SELECT count(*) FROM dead_letters").fetchone()[0],
            "runs": {r[0]: (r[1], _us(r[2]), _us(r[3])) for r in runs},
        }
    finally:
        con.close()


def wait_complete(warehouse: Path, work: Workload, timeout: float, procs=()) -> dict:
    """Poll until the views hold every distinct event and every dead letter; fail early if a
    worker that should be running exited, and on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        res = results(warehouse)
        if res["events"] >= work.distinct and res["dead"] >= len(work.poison):
            return res
        for proc in procs:
            assert proc.poll() is None, f"worker {proc.pid} exited with {proc.returncode}"
        assert time.monotonic() < deadline, (
            f"after {timeout}s: {res['events']}/{work.distinct} events, "
            f"{res['dead']}/{len(work.poison)} dead letters")
        time.sleep(0.5)


def assert_exactly_once(res: dict, work: Workload) -> None:
    assert res["events"] == work.distinct, "events lost or counted twice"
    assert res["dead"] == len(work.poison)
    expected = work.expected_runs()
    got = res["runs"]
    wrong = {k: (got.get(k), v) for k, v in expected.items() if got.get(k) != v}
    extra = set(got) - set(expected)
    assert not wrong and not extra, f"{len(wrong)} wrong run(s), e.g. {list(wrong.items())[:3]}; extra {extra}"


def received_messages(log: Path) -> int:
    m = re.search(r"received (\d+) message\(s\)", log.read_text(errors="replace"))
    assert m, f"no final summary in {log}"
    return int(m.group(1))


def assert_clean_log(log: Path) -> str:
    text = log.read_text(errors="replace")
    assert "Traceback" not in text and "Unclosed" not in text, text[-3000:]
    return text


def blob_prefix(local_hub, hub: str) -> str:
    return f"{local_hub.host}:{local_hub.port}/{hub}/$default".lower()


def checkpoints(storage, container: str, prefix: str) -> dict[str, int]:
    """Partition id -> checkpointed sequence number, from the checkpoint blobs."""
    blobs = storage.list_blobs(container, prefix=f"{prefix}/checkpoint/")
    return {name.rsplit("/", 1)[1]: int(meta["sequencenumber"]) for name, meta in blobs.items()}


def ownership(storage, container: str, local_hub, hub: str) -> list[dict]:
    """The ownership records as the SDK's load balancer sees them (with last-modified times)."""
    from azure.eventhub.extensions.checkpointstoreblobaio import BlobCheckpointStore

    async def read():
        store = BlobCheckpointStore.from_connection_string(storage.connection_string, container)
        async with store:
            return await store.list_ownership(f"{local_hub.host}:{local_hub.port}", hub, "$Default")

    return asyncio.run(read())


def live_owners(records: list[dict]) -> dict[str, str]:
    """Partition id -> owner id, for ownership records younger than the expiry."""
    now = time.time()
    return {r["partition_id"]: r["owner_id"] for r in records
            if r["owner_id"] and now - r["last_modified_time"] < OWNERSHIP_EXPIRY_S}


def last_sequences(local_hub, hub: str) -> dict[str, int]:
    return {pid: info["last_enqueued_sequence_number"] for pid, info in local_hub.partition_info(hub).items()}


def split_between(logs: list[Path], indexes: list[int], partitions: int, owners) -> list[set[str]] | None:
    """Each partition held by exactly one of these workers (their logs), and the ownership
    records (`owners()`: partition -> live owner) agree: every partition has a live owner,
    one owner id per worker. None while that is not so."""
    everything = {str(p) for p in range(partitions)}
    held = [claimed_partitions(logs[i]) for i in indexes]
    if sum(len(h) for h in held) != partitions or set().union(*held) != everything:
        return None
    live = owners()
    if set(live) != everything or len(set(live.values())) != len(indexes):
        return None
    return held


def stable_split(logs: list[Path], indexes: list[int], partitions: int, owners) -> list[set[str]] | None:
    """split_between, the same two load-balancing rounds later."""
    first = split_between(logs, indexes, partitions, owners)
    if not first:
        return None
    time.sleep(2.0)
    return first if split_between(logs, indexes, partitions, owners) == first else None


def kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)


def wait_for_line(log: Path, pattern: str, timeout: float, proc: subprocess.Popen) -> None:
    def seen():
        assert proc.poll() is None, f"worker exited with {proc.returncode}:\n{log.read_text()[-3000:]}"
        return log.exists() and re.search(pattern, log.read_text(errors="replace"))

    wait_until(seen, timeout, f"{pattern!r} in {log.name}")


# ---------------------------------------------------------------- 1. chaos: SIGKILL while the stream flows


def test_sigkill_at_random_moments_while_the_stream_flows(tmp_path, local_hub, make_hub, azurite,
                                                          checkpoint_container):
    rng = random.Random(SEED)
    work = Workload(runs=300, seed=31, slices=12)
    hub = make_hub(4)
    cs = local_hub.connection_string(hub)
    warehouse = tmp_path / "wh"
    env = worker_env(cs, azurite.connection_string, checkpoint_container, warehouse)

    hold_last = 2
    sender = Sender(cs, work.slices, pause_s=1.5, partitions=4, hold_last=hold_last)
    # Kill points: seeded-random numbers of committed events, sorted, within what is sent before
    # the held slices; each worker also commits something of its own before its kill.
    before_hold = {b for part in work.slices[:-hold_last] for b in part} - set(work.poison)
    targets = sorted(rng.sample(range(1, len(before_hold) * 3 // 4), 6))
    kills: list[tuple[int, int]] = []  # (committed events wanted, committed events at the kill)
    proc = None
    try:
        sender.start()
        for n, target in enumerate(targets):
            log = tmp_path / f"worker{n}.log"
            proc = start_worker(env, log)
            wait_for_line(log, r"partition \d+ claimed", timeout=60, proc=proc)
            wanted = max(target, stored_event_count(warehouse) + 1)

            def reached(proc=proc, wanted=wanted):
                assert proc.poll() is None, f"worker exited with {proc.returncode}:\n{log_tail(proc.log_path)}"
                return stored_event_count(warehouse) >= wanted

            wait_until(reached, 120, f"{wanted} committed events (worker {n})", interval=0.1)
            proc.send_signal(signal.SIGKILL)
            assert proc.wait(10) == -signal.SIGKILL  # killed mid-run, not exited on its own
            kills.append((wanted, stored_event_count(warehouse)))
            text = log.read_text(errors="replace")
            assert "Traceback" not in text, text[-3000:]
        sent_during_kills = sender.sent
        sender.release()

        log = tmp_path / "worker-final.log"
        proc = start_worker(env, log)
        sender.finish()
        res = wait_complete(warehouse, work, timeout=120, procs=[proc])
        # every partition checkpointed at its last event: all read, anything counted twice shows
        prefix, last = blob_prefix(local_hub, hub), last_sequences(local_hub, hub)
        wait_until(lambda: checkpoints(azurite, checkpoint_container, prefix) == last, 60,
                   f"checkpoints at the last events {last}")
        code = stop_worker(proc)
    finally:
        sender.release()
        if proc is not None:
            kill(proc)
    assert code == 0
    assert_clean_log(log)
    res = results(warehouse)
    print(f"\nseed {SEED}: kills (committed events wanted, committed at the kill): {kills}; slices sent "
          f"while killing: {sent_during_kills}/{len(work.slices)}; {work.distinct} distinct events, "
          f"{res['stored']} stored rows ({res['stored'] - res['events']} redelivered copies)")
    assert len(kills) == 6 and all(wanted <= got < work.distinct for wanted, got in kills), kills
    assert sent_during_kills < len(work.slices), "the stream had already ended before the kills"
    assert_exactly_once(res, work)


# ---------------------------------------------------------------- 2. hub drops connections, storage outage


def test_hub_drops_connections_and_storage_outage_recovers_without_restart(tmp_path, local_hub, make_hub):
    work = Workload(runs=250, seed=57, slices=10)
    hub = make_hub(4)
    cs = local_hub.connection_string(hub)
    warehouse = tmp_path / "wh"
    # A private Azurite: stopping the session one would disturb other tests' fixtures.
    storage = Azurite(location=str(tmp_path / "azurite"))
    proc = None
    try:
        storage.start()
        storage.create_container("checkpoints")
        env = worker_env(cs, storage.connection_string, "checkpoints", warehouse)
        log = tmp_path / "worker.log"
        proc = start_worker(env, log)
        wait_for_line(log, r"receiving from", timeout=60, proc=proc)
        sender = Sender(cs, work.slices, pause_s=1.0, partitions=4)
        sender.start()

        sender.wait_sent(3)
        wait_until(lambda: results(warehouse)["events"] > 0, 60, "first events stored")
        dropped = local_hub.drop_all_connections()
        assert dropped >= 1  # the worker's connection at least

        sender.wait_sent(6)
        before = checkpoints(storage, "checkpoints", blob_prefix(local_hub, hub))
        storage.stop()  # the tail of the stream arrives while storage is down
        # down until the worker has met it (a checkpoint failed) and the whole stream was sent
        wait_for_line(log, CHECKPOINT_FAILED.pattern, timeout=90, proc=proc)
        sender.wait_sent(len(work.slices), timeout=90)
        assert proc.poll() is None, "the worker gave up during the storage outage"
        storage.start()
        sender.finish()

        res = wait_complete(warehouse, work, timeout=120, procs=[proc])
        # recovered by itself: every partition gets checkpointed at its last event, no restart
        prefix = blob_prefix(local_hub, hub)
        last = last_sequences(local_hub, hub)
        wait_until(lambda: checkpoints(storage, "checkpoints", prefix) == last, 90,
                   f"checkpoints to reach {last} (now {checkpoints(storage, 'checkpoints', prefix)})")
        assert proc.poll() is None
        code = stop_worker(proc)
    finally:
        if proc is not None:
            kill(proc)
        storage.cleanup()
    assert code == 0
    text = assert_clean_log(log)
    failures = CHECKPOINT_FAILED.findall(text)
    assert failures, "no checkpoint retry warning during the storage outage:\n" + text[-3000:]
    for pid, offset, seq in failures:  # the warnings name a real partition, offset and sequence
        assert pid in last and int(seq) <= last[pid] and int(offset) >= 0
    # the outage neither lost nor moved back a checkpoint
    assert all(before.get(pid, -1) <= seq for pid, seq in last.items())
    res = results(warehouse)
    print(f"\ndropped {dropped} connection(s); checkpoints before the outage {before}; "
          f"{len(failures)} checkpoint failure warning(s); {res['stored'] - res['events']} redelivered copies")
    assert_exactly_once(res, work)


def test_graceful_stop_during_a_storage_outage_is_bounded_and_loses_nothing(tmp_path, local_hub, make_hub):
    """Regression: the blob SDK retries an unreachable store for ~80 s per call (15 s first
    backoff) and the worker awaited that under its flush lock, so SIGTERM during an outage took
    ~170 s. Now one checkpoint attempt is bounded; the stop checkpoints nothing it cannot, and a
    restart once storage is back re-reads from the old checkpoints: nothing lost or doubled."""
    work = Workload(runs=120, seed=91, slices=2)
    hub = make_hub(4)
    cs = local_hub.connection_string(hub)
    warehouse = tmp_path / "wh"
    storage = Azurite(location=str(tmp_path / "azurite"))
    prefix = blob_prefix(local_hub, hub)
    proc = None
    try:
        storage.start()
        storage.create_container("checkpoints")
        env = worker_env(cs, storage.connection_string, "checkpoints", warehouse)
        proc = start_worker(env, tmp_path / "worker1.log")
        asyncio.run(send_spread(cs, work.slices[0], 4))
        wait_until(lambda: len(checkpoints(storage, "checkpoints", prefix)) == 4, 60, "first checkpoints")
        storage.stop()
        asyncio.run(send_spread(cs, work.slices[1], 4))
        wait_until(lambda: results(warehouse)["events"] == work.distinct, 60, "the second slice stored")
        started = time.monotonic()
        # bounded: the regression took ~170 s; 60 s leaves a busy machine room (fails with the log)
        code = stop_worker(proc, timeout=60)
        stop_s = time.monotonic() - started
        assert code == 0
        assert_clean_log(tmp_path / "worker1.log")

        storage.start()
        proc = start_worker(env, tmp_path / "worker2.log")
        res = wait_complete(warehouse, work, timeout=120, procs=[proc])
        last = last_sequences(local_hub, hub)
        wait_until(lambda: checkpoints(storage, "checkpoints", prefix) == last, 60, "checkpoints at the end")
        assert stop_worker(proc) == 0
    finally:
        if proc is not None:
            kill(proc)
        storage.cleanup()
    assert_clean_log(tmp_path / "worker2.log")
    res = results(warehouse)
    print(f"\ngraceful stop during the outage took {stop_s:.1f}s; "
          f"{res['stored'] - res['events']} redelivered copies")
    assert_exactly_once(res, work)


# ---------------------------------------------------------------- 3. three workers, eight partitions


def test_three_workers_share_eight_partitions_and_take_over_from_a_killed_one(
        tmp_path, local_hub, make_hub, azurite, checkpoint_container):
    rng = random.Random(SEED + 1)
    work = Workload(runs=320, seed=77, slices=8)
    hub = make_hub(8)
    cs = local_hub.connection_string(hub)
    warehouse = tmp_path / "wh"  # one warehouse: all workers append to it
    env = worker_env(cs, azurite.connection_string, checkpoint_container, warehouse)
    logs = [tmp_path / f"worker{i}.log" for i in range(3)]
    procs: list[subprocess.Popen] = []
    sender = None

    try:
        for log in logs:
            procs.append(start_worker(env, log))
        owners = lambda: live_owners(ownership(azurite, checkpoint_container, local_hub, hub))  # noqa: E731
        split = wait_until(lambda: stable_split(logs, [0, 1, 2], 8, owners), 90, "8 partitions split between 3 workers")
        assert sorted(len(h) for h in split) == [2, 3, 3]

        # the last 2 slices are sent only after the kill: the stream outlasts it
        sender = Sender(cs, work.slices, pause_s=1.0, partitions=8, hold_last=2)
        sender.start()
        sender.wait_sent(3)
        victim = rng.randrange(3)
        orphaned = claimed_partitions(logs[victim])
        prefix = blob_prefix(local_hub, hub)
        # kill once the victim has checkpointed each of its partitions
        wait_until(lambda: orphaned <= set(checkpoints(azurite, checkpoint_container, prefix)), 60,
                   f"checkpoints of partitions {sorted(orphaned)}")
        assert sender.sent < len(work.slices)
        procs[victim].send_signal(signal.SIGKILL)
        assert procs[victim].wait(10) == -signal.SIGKILL
        time.sleep(0.5)
        cps = checkpoints(azurite, checkpoint_container, prefix)
        resume_from = {pid: cps.get(pid, -1) for pid in orphaned}  # the takers must start after these
        visible_at_kill = results(warehouse)["events"]

        survivors = [i for i in range(3) if i != victim]
        sender.release()
        sender.finish()
        res = wait_complete(warehouse, work, timeout=120, procs=[procs[i] for i in survivors])
        split = wait_until(lambda: stable_split(logs, survivors, 8, owners), 60,
                           "8 partitions split between the 2 survivors")
        assert sorted(len(h) for h in split) == [4, 4]
        assert orphaned <= set().union(*split)
        codes = [stop_worker(procs[i]) for i in survivors]
    finally:
        if sender is not None:
            sender.release()
        for proc in procs:
            kill(proc)
    assert codes == [0, 0]
    texts = [assert_clean_log(logs[i]) for i in survivors]
    res = results(warehouse)
    last = last_sequences(local_hub, hub)
    total = sum(seq + 1 for seq in last.values())
    assert total == len(work.messages)
    received = sum(received_messages(logs[i]) for i in survivors)
    print(f"\nseed {SEED}: split {split}; killed worker {victim} holding {sorted(orphaned)}, checkpoints there "
          f"{resume_from}; {visible_at_kill} events visible at the kill; survivors received {received} "
          f"of {total} messages; {res['stored'] - res['events']} redelivered copies")
    # resumed from the victim's checkpoints: the survivors read everything but what the victim
    # had checkpointed (exactly, unless the survivors also moved partitions between themselves)
    expected_reads = total - sum(seq + 1 for seq in resume_from.values())
    if not any(re.search(r"partition \d+ closed", t) for t in texts):
        assert received == expected_reads
    else:
        assert expected_reads <= received < total
    assert_exactly_once(res, work)


# ---------------------------------------------------------------- 4. unwritable warehouse


def test_unwritable_warehouse_stops_with_a_clear_error_and_no_checkpoint(tmp_path, local_hub, make_hub, azurite,
                                                                         checkpoint_container):
    # `amlwh run` refuses a warehouse it cannot write before it starts (test_preflight.py); here
    # the warehouse becomes unwritable under a running worker: its parent folder is moved away
    # and a regular file put in its place (root ignores permissions; a file as parent stops even root)
    work = Workload(runs=30, seed=5, slices=1)
    hub = make_hub(4)
    cs = local_hub.connection_string(hub)
    blocker = tmp_path / "data"
    warehouse = blocker / "wh"
    env = worker_env(cs, azurite.connection_string, checkpoint_container, warehouse)
    log = tmp_path / "worker.log"
    proc = start_worker(env, log)
    try:
        wait_for_claims(proc, 4)
        blocker.rename(tmp_path / "data-moved")
        blocker.write_text("a regular file where the warehouse's parent should be\n")
        asyncio.run(send_events(cs, work.messages))
        code = proc.wait(60)
    finally:
        kill(proc)
    text = log.read_text(errors="replace")
    assert code != 0, text
    assert "cannot write to the warehouse" in text and str(blocker) in text, text
    assert "Traceback" not in text and "Unclosed" not in text, text
    assert "stopped: flushed" not in text  # it did not pretend to shut down cleanly
    blobs = azurite.list_blobs(checkpoint_container)
    assert any("/ownership/" in name for name in blobs), blobs  # it did run against the hub
    assert not [name for name in blobs if "/checkpoint/" in name], blobs
    assert not warehouse.exists() and blocker.is_file()
