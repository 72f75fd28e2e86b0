"""The live worker on a warehouse in Blob Storage (issue #15): real `amlwh run` processes,
the local hub and a real Azurite, the warehouse at abfs://<container>/<prefix>.

1. Three workers, each with a folder of its own (cwd, work_dir, cache_dir: no local path
   shared), share an 8-partition hub, the checkpoint container and the warehouse URL; one is
   SIGKILLed mid-stream after it checkpointed its partitions and the survivors take over. The
   views read from the blobs are exact: every distinct event once, every poison body one dead
   letter, the runs view equal to the generator's truth.
2. A worker on the Blob warehouse and a worker on a local folder read the same messages (one
   hub, two consumer groups). Between the two halves of the stream both are stopped
   gracefully and started again, the Blob one on a fresh machine folder, so its key index
   must find the events stored before the restart in the blobs (the second half redelivers
   some). Every view, and every stored table (so also what each writer skipped as already
   stored), holds the same rows: all columns but the wall-clock ingested_at. Both restart at
   the same stream position (after checkpointing all that was sent), as a restart resets the
   reorder buffer and with it which events count as `late`.
Both check that the prefix holds nothing but whole table files under their final names: no
temporary or partial upload, nothing provisional.

The results are read by downloading every blob under the prefix into a fresh local folder.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import time
import zlib
from pathlib import Path

import pytest
from azure.eventhub import EventData
from azure.eventhub.aio import EventHubProducerClient

from tests.consumer.live.test_worker_chaos import (SEED, Sender, Workload, assert_clean_log,
                                                   assert_exactly_once, checkpoints, kill, last_sequences,
                                                   live_owners, ownership, partition_keys, received_messages,
                                                   results)
from tests.support.remote import (BlobWarehouse, comparable_rows, machine, new_container, remote_worker_env,
                                  start_worker_in, unexpected_blobs)
from tests.support.worker import claimed_partitions, stop_worker, wait_until, worker_env

pytestmark = pytest.mark.integration


def checkpoint_prefix(local_hub, hub: str, group: str = "$default") -> str:
    return f"{local_hub.host}:{local_hub.port}/{hub}/{group}".lower()


def wait_complete(blobs: BlobWarehouse, seen: Path, work: Workload, timeout: float, procs=()) -> dict:
    """test_worker_chaos.wait_complete on the blobs: poll (mirroring new table files into
    `seen`) until the views hold every distinct event and dead letter."""
    deadline = time.monotonic() + timeout
    while True:
        res = results(blobs.mirror(seen))
        if res["events"] >= work.distinct and res["dead"] >= len(work.poison):
            return res
        for proc in procs:
            assert proc.poll() is None, f"worker {proc.pid} exited with {proc.returncode}"
        assert time.monotonic() < deadline, (
            f"after {timeout}s: {res['events']}/{work.distinct} events, "
            f"{res['dead']}/{len(work.poison)} dead letters")
        time.sleep(0.5)


@pytest.fixture
def blobs(azurite) -> BlobWarehouse:
    """The warehouse, in a container nobody made: the first worker makes it."""
    warehouse = BlobWarehouse(azurite.connection_string, new_container())
    yield warehouse
    warehouse.close()


def assert_only_table_files(names: list[str]) -> None:
    assert names, "nothing under the prefix"
    odd = unexpected_blobs(names)
    assert not odd, f"blobs other than whole table files under the prefix: {odd[:10]}"


# ---------------------------------------------------------------- 1. three machines, one killed


def test_three_workers_on_a_blob_warehouse_take_over_from_a_killed_one(
        tmp_path, local_hub, make_hub, azurite, checkpoint_container, blobs):
    rng = random.Random(SEED + 2)
    work = Workload(runs=320, seed=78, slices=8)
    hub = make_hub(8)
    cs = local_hub.connection_string(hub)
    machines = [machine(tmp_path / f"machine{i}") for i in range(3)]
    envs = [remote_worker_env(cs, azurite.connection_string, checkpoint_container, blobs,
                              azurite.connection_string, m) for m in machines]
    assert len({(e["AMLWH_WAREHOUSE__WORK_DIR"], e["AMLWH_WAREHOUSE__CACHE_DIR"]) for e in envs}) == 3
    logs = [tmp_path / f"worker{i}.log" for i in range(3)]
    seen = tmp_path / "seen"  # the test's own copy of the table files, while the workers run
    everything = {str(p) for p in range(8)}
    prefix = checkpoint_prefix(local_hub, hub)
    procs: list[subprocess.Popen] = []
    sender = None

    def balanced(indexes):
        held = [claimed_partitions(logs[i]) for i in indexes]
        if sum(len(h) for h in held) != 8 or set().union(*held) != everything:
            return None
        owners = live_owners(ownership(azurite, checkpoint_container, local_hub, hub))
        if set(owners) != everything or len(set(owners.values())) != len(indexes):
            return None
        return held

    def stable(indexes):
        first = balanced(indexes)
        if not first:
            return None
        time.sleep(2.0)  # two load-balancing rounds later, still the same split
        return first if balanced(indexes) == first else None

    try:
        for env, log, folder in zip(envs, logs, machines):
            procs.append(start_worker_in(env, log, folder))
        split = wait_until(lambda: stable([0, 1, 2]), 90, "8 partitions split between 3 workers")
        assert sorted(len(h) for h in split) == [2, 3, 3]

        sender = Sender(cs, work.slices, pause_s=1.0, partitions=8, hold_last=2)
        sender.start()
        sender.wait_sent(3)
        victim = rng.randrange(3)
        orphaned = claimed_partitions(logs[victim])
        # kill once the victim has checkpointed each of its partitions (so it committed there)
        wait_until(lambda: orphaned <= set(checkpoints(azurite, checkpoint_container, prefix)), 60,
                   f"checkpoints of partitions {sorted(orphaned)}", proc=procs[victim])
        assert sender.sent < len(work.slices)
        procs[victim].send_signal(signal.SIGKILL)
        assert procs[victim].wait(10) == -signal.SIGKILL
        visible_at_kill = results(blobs.mirror(seen))["events"]
        assert 0 < visible_at_kill < work.distinct

        survivors = [i for i in range(3) if i != victim]
        sender.release()
        sender.finish()
        wait_complete(blobs, seen, work, timeout=120, procs=[procs[i] for i in survivors])
        split = wait_until(lambda: stable(survivors), 60, "8 partitions split between the 2 survivors")
        assert orphaned <= set().union(*split)
        last = last_sequences(local_hub, hub)
        wait_until(lambda: checkpoints(azurite, checkpoint_container, prefix) == last, 60,
                   f"checkpoints at the last events {last}")
        codes = [stop_worker(procs[i]) for i in survivors]
    finally:
        if sender is not None:
            sender.release()
        for proc in procs:
            kill(proc)
    assert codes == [0, 0]
    for i in survivors:
        assert_clean_log(logs[i])

    final = tmp_path / "downloaded"
    names = blobs.download(final)
    assert_only_table_files(names)
    res = results(final)
    received = sum(received_messages(logs[i]) for i in survivors)
    print(f"\nseed {SEED}: killed worker {victim} holding {sorted(orphaned)}; {visible_at_kill} events "
          f"visible at the kill; survivors received {received} of {len(work.messages)} messages; "
          f"{len(names)} blobs; {res['stored'] - res['events']} redelivered copies")
    assert_exactly_once(res, work)
    # nothing was written to a local path but each machine's own work folder and cache; a
    # survivor removed its staging folder when it stopped
    for i, folder in enumerate(machines):
        assert set(os.listdir(folder)) <= {"work", "cache"}, (i, os.listdir(folder))
        if i != victim:
            assert os.listdir(folder / "work") == [], (i, os.listdir(folder / "work"))


# ---------------------------------------------------------------- 2. same views as on local disk


async def send_by_body(connection_string: str, bodies: list[bytes], partitions: int) -> None:
    """Send bodies in order, each to the partition its bytes hash to: a redelivered copy
    follows its original in the original's partition, so which copy a worker stores first
    does not depend on how it interleaves partitions."""
    keys = partition_keys(partitions)
    producer = EventHubProducerClient.from_connection_string(connection_string)
    async with producer:
        for n, key in enumerate(keys):
            batch = await producer.create_batch(partition_key=key)
            for body in (b for b in bodies if zlib.crc32(b) % partitions == n):
                try:
                    batch.add(EventData(body))
                except ValueError:  # batch full
                    await producer.send_batch(batch)
                    batch = await producer.create_batch(partition_key=key)
                    batch.add(EventData(body))
            if len(batch):
                await producer.send_batch(batch)


def test_a_blob_warehouse_holds_the_same_views_as_a_local_one_across_a_restart(
        tmp_path, local_hub, make_hub, azurite, checkpoint_container, blobs):
    work = Workload(runs=150, seed=83, slices=2)
    hub = make_hub(4, consumer_groups=("local",))
    cs = local_hub.connection_string(hub)
    local = tmp_path / "local-warehouse"
    # redelivered copies of events stored before the restart: the restarted Blob worker must
    # find those stored from the blobs (through its new, empty cache), as the local one does
    crossing = (set(work.slices[0]) & set(work.slices[1])) - set(work.poison)
    assert crossing

    def start(kind: str, run: int) -> subprocess.Popen:
        folder = machine(tmp_path / f"{kind}{run}")
        if kind == "remote":
            env = remote_worker_env(cs, azurite.connection_string, checkpoint_container, blobs,
                                    azurite.connection_string, folder)
        else:
            env = worker_env(cs, azurite.connection_string, checkpoint_container, local,
                             AMLWH_EVENTHUB__CONSUMER_GROUP="local")
        return start_worker_in(env, tmp_path / f"{kind}{run}.log", folder)

    prefixes = [checkpoint_prefix(local_hub, hub), checkpoint_prefix(local_hub, hub, "local")]

    def all_checkpointed(procs):
        last = last_sequences(local_hub, hub)
        for prefix, proc in zip(prefixes, procs):
            wait_until(lambda prefix=prefix: checkpoints(azurite, checkpoint_container, prefix) == last, 60,
                       f"checkpoints of {prefix} at {last}", proc=proc)

    procs: list[subprocess.Popen] = []
    try:
        procs = [start("remote", 1), start("local", 1)]
        asyncio.run(send_by_body(cs, work.slices[0], 4))
        # both have stored and checkpointed every message sent so far: stop both gracefully
        # and start them again, so both read the rest from the same positions
        all_checkpointed(procs)
        assert [stop_worker(p) for p in procs] == [0, 0]
        procs = [start("remote", 2), start("local", 2)]
        asyncio.run(send_by_body(cs, work.slices[1], 4))
        all_checkpointed(procs)
        assert [stop_worker(p) for p in procs] == [0, 0]
    finally:
        for proc in procs:
            kill(proc)
    for log in tmp_path.glob("*.log"):
        assert_clean_log(log)

    remote = tmp_path / "downloaded"
    names = blobs.download(remote)
    assert_only_table_files(names)
    for folder in (tmp_path / "remote1", tmp_path / "remote2"):  # nothing local but its own, removed at exit
        assert set(os.listdir(folder)) <= {"work", "cache"} and os.listdir(folder / "work") == [], folder
    for root in (local, remote):
        assert_exactly_once(results(root), work)
    on_disk, in_blobs = comparable_rows(local), comparable_rows(remote)
    for name, rows in on_disk.items():
        assert in_blobs[name] == rows, (
            f"{name}: {len(in_blobs[name])} rows from the blobs, {len(rows)} on disk; e.g. only in the "
            f"blobs {[r for r in in_blobs[name] if r not in rows][:2]}, only on disk "
            f"{[r for r in rows if r not in in_blobs[name]][:2]}")
    assert on_disk["raw_events"] and on_disk["runs"] and on_disk["dead_letters"]
    stored = len(on_disk["store.raw_events"])
    print(f"\n{len(names)} blobs; {stored} stored raw rows for {work.distinct} events; "
          f"{len(crossing)} redelivered across the restart")
