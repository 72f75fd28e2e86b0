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
3. Three workers compact the warehouse in the background (every 2 s, partitions of 2 files,
   a 1 s grace), so rounds from several machines, some finding the lease held, run while
   commits continue; one worker is SIGKILLed while a round of its child runs (the child
   finishes it). Reads of the views all along never show an event twice, lose one shown
   before, or serve run views from the view state other than the reference views over the
   same files; each table file deleted went a grace after its merged file was listed. At the
   end the views are exact, and after a last round from another machine every (table, date)
   holds one file.

The results are read from the blobs, through a local folder that mirrors the listing.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import signal
import subprocess
import time
import zlib
from pathlib import Path

import psutil
import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.eventhub import EventData
from azure.eventhub.aio import EventHubProducerClient

from consumer.maintenance.remote_compaction import LOCK_BLOB
from consumer.query.connection import open_views
from tests.consumer.live.test_worker_chaos import (SEED, Sender, Workload, assert_clean_log,
                                                   assert_exactly_once, checkpoints, kill, last_sequences,
                                                   live_owners, ownership, partition_keys, received_messages,
                                                   results, stable_split)
from tests.support.cli import amlwh
from tests.support.remote import (MANIFEST, MERGED_FILE, RECORD, TABLE_FILE, BlobWarehouse, Watch, comparable_rows,
                                  machine, new_container, remote_worker_env, start_worker_in, unexpected_blobs)
from tests.support.warehouse import VIEWS
from tests.support.worker import claimed_partitions, stop_worker, wait_until, worker_env

pytestmark = pytest.mark.integration


def checkpoint_prefix(local_hub, hub: str, group: str = "$default") -> str:
    return f"{local_hub.host}:{local_hub.port}/{hub}/{group}".lower()


def wait_complete(blobs: BlobWarehouse, seen: Path, work: Workload, timeout: float, procs=()) -> dict:
    """test_worker_chaos.wait_complete on the blobs: poll (mirroring the listing into `seen`)
    until the views hold every distinct event and dead letter."""
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
    """No compaction ran (the default interval is 300 s): nothing but table files and probes."""
    assert names, "nothing under the prefix"
    odd = unexpected_blobs(names, compaction=False)
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
    prefix = checkpoint_prefix(local_hub, hub)
    procs: list[subprocess.Popen] = []
    sender = None

    try:
        for env, log, folder in zip(envs, logs, machines):
            procs.append(start_worker_in(env, log, folder))
        owners = lambda: live_owners(ownership(azurite, checkpoint_container, local_hub, hub))  # noqa: E731
        split = wait_until(lambda: stable_split(logs, [0, 1, 2], 8, owners), 90, "8 partitions split between 3 workers")
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
        split = wait_until(lambda: stable_split(logs, survivors, 8, owners), 60,
                           "8 partitions split between the 2 survivors")
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


# ---------------------------------------------------------------- 3. background compaction on several machines


GRACE_S = 1.0
COMPACTING = {"AMLWH_COMPACTION__INTERVAL_S": "2", "AMLWH_COMPACTION__MIN_FILES": "2",
              "AMLWH_COMPACTION__GRACE_S": f"{GRACE_S:g}"}
ROUND_DONE = re.compile(r"amlwh\.worker: background compaction round \d+ of \S+ done")
# a round that found the lease held (it tries again at the next interval: live/compaction_timer.py)
ROUND_BUSY = re.compile(r"amlwh\.worker: background compaction round \d+ of \S+ found another compaction running")
LOGGED = re.compile(r"^\d{4}-\d{2}-\d{2} [\d:,]+ (WARNING|ERROR|CRITICAL) (.*)$", re.MULTILINE)
# the poison bodies, and a partition moving to another worker (the hub closes the old link)
EXPECTED_WARNING = re.compile(r"amlwh\.worker: dead letter \(|New receiver '[-0-9a-f]+' with higher epoch"
                              r"|amlwh\.worker: partition \d+ closed \(OWNERSHIP_LOST\)")
# the run views a view state (a manifest) serves, and the views over them
STATE_VIEWS = ("runs", "run_status_history", "run_durations", "failure_rates", "monitor_metrics")


class LiveReads:
    """The views, read again and again from an exact mirror of the blobs while workers write
    and compact. Each read must show every event once, at most the distinct events sent, every
    event an earlier read showed, and the run views a view state serves equal to the reference
    views computed from scratch over the same files (no run with a status other than its
    visible events give)."""

    def __init__(self, blobs: BlobWarehouse, folder: Path, work: Workload):
        self.blobs, self.folder, self.work = blobs, folder, work
        self.events: set[tuple] = set()  # (workspace, event_id) the last read showed
        self.dead = 0
        self.reads = 0
        self.over_state = 0  # reads whose run views came from a view state

    def read(self) -> int:
        """One read; the number of events it showed."""
        root = self.blobs.mirror(self.folder)
        if not (root / "raw_events").is_dir():
            return 0
        con, scope = open_views(root)
        try:
            events = con.execute("SELECT workspace, event_id FROM raw_events").fetchall()
            dead = con.execute("SELECT count(*) FROM dead_letters").fetchone()[0]
            twice = con.execute("SELECT count(*) - count(DISTINCT (workspace, run_id)) FROM runs").fetchone()[0]
            served = {v: sorted(con.execute(f"SELECT * FROM {v}").fetchall(), key=repr) for v in STATE_VIEWS}
        finally:
            con.close()
        con, _ = open_views(root, use_state=False)
        try:
            reference = {v: sorted(con.execute(f"SELECT * FROM {v}").fetchall(), key=repr) for v in STATE_VIEWS}
        finally:
            con.close()
        visible = set(events)
        assert len(visible) == len(events), f"{len(events) - len(visible)} event(s) shown twice"
        assert len(visible) <= self.work.distinct, f"{len(visible)} events shown, {self.work.distinct} sent"
        assert self.events <= visible, f"{len(self.events - visible)} event(s) shown before are gone"
        assert self.dead <= dead <= len(self.work.poison), (self.dead, dead)
        assert twice == 0, f"{twice} run(s) shown twice"
        for view, rows in reference.items():
            assert served[view] == rows, (
                f"{view} over the view state differs from the reference over the same files: only served "
                f"{[r for r in served[view] if r not in rows][:2]}, only in the reference "
                f"{[r for r in rows if r not in served[view]][:2]}")
        self.events, self.dead = visible, dead
        self.reads += 1
        self.over_state += scope is not None
        return len(visible)


def compaction_children(proc: subprocess.Popen) -> list[psutil.Process]:
    """The worker's running `amlwh compact` child (compaction_timer.py), if any."""
    try:
        children = psutil.Process(proc.pid).children()
    except psutil.NoSuchProcess:
        return []
    found = []
    for child in children:
        try:
            if "compact" in child.cmdline():
                found.append(child)
        except psutil.NoSuchProcess:
            pass
    return found


def lease_held(blobs: BlobWarehouse) -> bool:
    """Whether a compaction round holds the warehouse's lease now."""
    try:
        props = blobs.client.get_blob_client(blobs.prefix + LOCK_BLOB).get_blob_properties()
    except ResourceNotFoundError:  # no round made the lock blob yet
        return False
    return props.lease.state == "leased"


def running(procs: list[psutil.Process]) -> list[psutil.Process]:
    alive = []
    for proc in procs:
        try:
            if proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(proc)
        except psutil.NoSuchProcess:
            pass
    return alive


def folder_counts(names: list[str]) -> dict[str, int]:
    """Committed files per (table, date) folder."""
    counts: dict[str, int] = {}
    for name in names:
        if TABLE_FILE.fullmatch(name) or MERGED_FILE.fullmatch(name):
            folder = name.rsplit("/", 1)[0]
            counts[folder] = counts.get(folder, 0) + 1
    return counts


def grace_kept(watch: Watch) -> tuple[list[float], list[str]]:
    """For each table file the watch saw deleted: an upper bound on how long its merged
    replacement had been listed beside it (the replacement: the earliest merged file of its
    folder listed when it went, and still listed after). A background round deletes its inputs
    only after waiting out the grace since its merged files were uploaded, so no bound may be
    shorter. Returns the bounds, and the files that went with no replacement listed."""
    bounds, orphans = [], []
    for name, seen in watch.blobs.items():
        if seen.gone_by is None or not (TABLE_FILE.fullmatch(name) or MERGED_FILE.fullmatch(name)):
            continue
        folder = name.rsplit("/", 1)[0] + "/"
        replacements = [m for n, m in watch.blobs.items()
                        if n != name and n.startswith(folder) and MERGED_FILE.fullmatch(n)
                        and m.listed_by <= seen.gone_by and (m.gone_by is None or m.gone_by > seen.gone_by)]
        if not replacements:
            orphans.append(name)
            continue
        if any(m.absent_before is None for m in replacements):
            continue  # listed since the watch began: longer than any bound
        bounds.append(seen.gone_by - min(m.absent_before for m in replacements))
    return bounds, orphans


def test_workers_compacting_a_blob_warehouse_in_the_background_keep_its_views_exact(
        tmp_path, local_hub, make_hub, azurite, checkpoint_container, blobs):
    started = time.monotonic()
    rng = random.Random(SEED + 3)
    work = Workload(runs=240, seed=79, slices=10)
    partitions = 6
    hub = make_hub(partitions)
    cs = local_hub.connection_string(hub)
    machines = [machine(tmp_path / f"machine{i}") for i in range(3)]
    envs = [remote_worker_env(cs, azurite.connection_string, checkpoint_container, blobs,
                              azurite.connection_string, m, **COMPACTING) for m in machines]
    logs = [tmp_path / f"worker{i}.log" for i in range(3)]
    # a round that takes the lease reads a snapshot in a folder of its own under its machine's
    # cache, for as long as it runs (at least the grace when it merged); a busy round makes none
    watch = Watch(blobs, {str(i): blobs.cache_views(m / "cache") for i, m in enumerate(machines)})
    reads = LiveReads(blobs, tmp_path / "seen", work)
    everything = {str(p) for p in range(partitions)}
    prefix = checkpoint_prefix(local_hub, hub)
    procs: list[subprocess.Popen] = []
    orphans: list[psutil.Process] = []
    sender = None

    def split():
        held = [claimed_partitions(log) for log in logs]
        return all(held) and sum(map(len, held)) == partitions and set().union(*held) == everything

    try:
        watch.start()
        for env, log, folder in zip(envs, logs, machines):
            procs.append(start_worker_in(env, log, folder))
        wait_until(split, 90, f"{partitions} partitions split between 3 workers")
        sender = Sender(cs, work.slices, pause_s=1.0, partitions=partitions, hold_last=3)
        sender.start()
        victim = rng.randrange(3)

        # read the views while the stream flows, until the victim has compacted and a merged
        # file is listed; then SIGKILL it while its next round's child runs
        def victim_compacted():
            reads.read()
            assert procs[victim].poll() is None, f"worker {victim} exited with {procs[victim].returncode}"
            return (ROUND_DONE.search(logs[victim].read_text(errors="replace"))
                    and any(MERGED_FILE.fullmatch(n) for n in list(watch.blobs)))

        wait_until(victim_compacted, 60, f"a background compaction round of worker {victim}", interval=0)
        orphans = wait_until(lambda: compaction_children(procs[victim]), 30,
                             f"a compaction round of worker {victim} running", proc=procs[victim], interval=0.02)
        procs[victim].send_signal(signal.SIGKILL)
        assert procs[victim].wait(10) == -signal.SIGKILL
        orphans = running(orphans)  # its round goes on without it (unless it had just ended)
        killed_at = reads.read()
        assert sender.sent < len(work.slices)  # the stream outlasts the kill

        survivors = [i for i in range(3) if i != victim]
        sender.release()

        def complete():
            for i in survivors:
                assert procs[i].poll() is None, f"worker {i} exited with {procs[i].returncode}"
            return (reads.read() == work.distinct and reads.dead == len(work.poison)
                    and not sender.is_alive())

        wait_until(complete, 120, f"{work.distinct} events and {len(work.poison)} dead letters", interval=0)
        streamed = time.monotonic()
        sender.finish()
        last = last_sequences(local_hub, hub)
        wait_until(lambda: checkpoints(azurite, checkpoint_container, prefix) == last, 60,
                   f"checkpoints at the last events {last}")
        _, alive = psutil.wait_procs(orphans, timeout=60)  # the killed worker's round, run to its end
        assert not alive, f"the killed worker's compaction {[p.pid for p in alive]} still runs"

        # the survivors' last rounds: each runs within interval_s of its last commit; settled
        # once none has run, nor held the lease, for longer than that
        quiet_since = [time.monotonic()]

        def settled():
            if lease_held(blobs) or any(compaction_children(procs[i]) for i in survivors):
                quiet_since[0] = time.monotonic()
            return time.monotonic() - quiet_since[0] > float(COMPACTING["AMLWH_COMPACTION__INTERVAL_S"]) + 1.5

        wait_until(settled, 60, "the survivors' last compaction rounds", interval=0.05)
        left_by_workers = folder_counts(blobs.names())
        codes = [stop_worker(procs[i]) for i in survivors]
        assert codes == [0, 0]
        before_last = comparable_rows(blobs.mirror(tmp_path / "seen"), VIEWS)

        # a last round, from a machine of its own (a cold cache), a grace after the workers'
        reader = machine(tmp_path / "machine-reader")
        out = amlwh("compact", "--min-files", "2", "--wait-for-grace", cwd=reader, env={
            "AMLWH_WAREHOUSE__PATH": blobs.url, "AMLWH_WAREHOUSE__CONNECTION_STRING": azurite.connection_string,
            "AMLWH_WAREHOUSE__CACHE_DIR": str(reader / "cache"), "AMLWH_WAREHOUSE__WORK_DIR": str(reader / "work"),
            **COMPACTING})
        assert "another compaction" not in out.stderr, out.stderr  # the workers' rounds were over
    finally:
        if sender is not None:
            sender.release()
        for proc in procs:
            kill(proc)
        for orphan in orphans:
            try:
                orphan.kill()
            except psutil.NoSuchProcess:
                pass
        if watch.is_alive():
            watch.finish()

    # the warehouse at the end: exact, as the reads before the last round showed it, one file
    # per (table, date), nothing retired left, no name but the writers' and the compactions'
    final = tmp_path / "downloaded"
    names = blobs.download(final)
    assert not unexpected_blobs(names), unexpected_blobs(names)
    res = results(final)
    assert_exactly_once(res, work)
    assert comparable_rows(final, VIEWS) == before_last
    assert set(folder_counts(names).values()) == {1}, folder_counts(names)
    assert not [n for n in names if RECORD.fullmatch(n)]
    assert [n for n in names if MANIFEST.fullmatch(n)]

    # the logs: rounds, and no warning but the poison bodies' and the hub's ownership moves
    texts = [log.read_text(errors="replace") for log in logs]
    for i, text in enumerate(texts):
        assert "Traceback" not in text and (i == victim or "Unclosed" not in text), text[-3000:]
        odd = [m.group(0) for m in LOGGED.finditer(text) if not EXPECTED_WARNING.search(m.group(2))]
        assert not odd, f"worker {i}: {odd[:5]}"
    rounds = [len(ROUND_DONE.findall(text)) for text in texts]
    busy = [len(ROUND_BUSY.findall(text)) for text in texts]
    holding = [len(watch.entries[str(i)]) for i in range(3)]
    merged = [seen for n, seen in watch.blobs.items() if MERGED_FILE.fullmatch(n)]
    manifests = sorted(n for n in watch.blobs if MANIFEST.fullmatch(n))
    bounds, replaced_by_nothing = grace_kept(watch)
    print(f"\nseed {SEED}: {time.monotonic() - started:.1f}s; killed worker {victim} during its round "
          f"{[p.pid for p in orphans]} at {killed_at} visible events; {reads.reads} reads of the views "
          f"({reads.over_state} over a view state, {blobs.gone} listing(s) again for a blob deleted "
          f"meanwhile); rounds done {rounds} (+{len(orphans)} killed), took the lease {holding}, "
          f"busy {busy}; {len(merged)} merged files, {len(manifests)} manifests; {len(bounds)} table files "
          f"deleted, their merged files listed beside them for at least "
          f"{min(bounds, default=float('nan')):.2f}s; left by the workers' rounds: at most "
          f"{max(left_by_workers.values())} file(s) in a folder, {sum(left_by_workers.values())} in all; "
          f"last round: {out.stdout.strip()}")
    # several rounds on several machines while the stream flowed, some finding the lease held
    assert sum(1 for h in holding if h) >= 2 and sum(busy) >= 1, (rounds, holding, busy)
    assert any(seen.listed_by < streamed for seen in merged) and manifests
    # inputs went a grace after their merged file appeared, never before it
    assert not replaced_by_nothing, f"deleted with no merged file listed: {replaced_by_nothing[:5]}"
    short = [b for b in bounds if b < GRACE_S]
    assert not short, f"{len(short)} of {len(bounds)} inputs deleted within {max(short):.2f}s of their merged file"
