"""A Blob Storage outage in the middle of a live worker's flush (issue #15): nothing is
checkpointed past the rows stored in the remote warehouse, and the worker recovers.

The worker's warehouse is `abfs://<container>/warehouse` on Azurite, reached through a TCP
proxy (devstack/tcp_proxy.py) that cuts the path when it sees the request line of an upload
to raw_events/: after every fact-table file of that commit was uploaded, before its
raw_events files, the exact middle of a remote commit (storage/remote_writes.py). The
checkpoint store talks to Azurite directly, so checkpoints keep working during the outage
and would run ahead of the warehouse if the worker acknowledged what it had not stored.

"Nothing checkpointed past durable rows" is checked against the blobs themselves, read from
Azurite directly (never through the proxy): for every partition, each message at or before
its checkpointed sequence number has its event in a raw_events blob (a poison body: its
dead letter at those coordinates). The messages of each partition are known from the
sender: one keyed batch a partition per slice, slices in order (send_spread).
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest
from azure.core.exceptions import ServiceRequestError, ServiceResponseError
from azure.storage.blob import ContainerClient

from devstack.azurite import ACCOUNT
from devstack.tcp_proxy import TcpProxy
from tests.consumer.live.test_worker_chaos import (
    Sender,
    Workload,
    assert_clean_log,
    assert_exactly_once,
    blob_prefix,
    checkpoints,
    kill,
    last_sequences,
    results,
    send_spread,
)
from tests.support.worker import start_worker, stop_worker, wait_for_claims, wait_until, worker_env
from transforms.rows import EVENT_TABLES

pytestmark = pytest.mark.integration

PREFIX = "warehouse"
PARTITIONS = 4
RETRY_WARNING = re.compile(r"Blob Storage did not take (raw_events/\S+) \((\w+)\); attempt (\d+), "
                           r"retrying in [\d.]+s file=(\S+)")


def raw_put(container: str) -> bytes:
    """The request line of an upload into the warehouse's raw_events folder."""
    return rb"^PUT /" + f"{ACCOUNT}/{container}/{PREFIX}/raw_events/".encode()


@pytest.fixture
def proxy(azurite):
    if not azurite.running:
        azurite.start()
    with TcpProxy(azurite.host, azurite.port) as proxy:
        yield proxy


def proxied(azurite, proxy: TcpProxy) -> str:
    """The Azurite connection string with the blob endpoint through the proxy."""
    cs = azurite.connection_string.replace(f"BlobEndpoint={azurite.blob_endpoint};",
                                           f"BlobEndpoint={proxy.url(ACCOUNT)};")
    assert proxy.url() in cs
    return cs


def proxied_worker(tmp_path: Path, hub_cs: str, azurite, checkpoint_container: str, proxy: TcpProxy,
                   **extra: str) -> tuple[str, dict]:
    """A new container's name, and the environment of a worker whose warehouse is there
    through the proxy while its checkpoints go to Azurite directly (the worker makes it)."""
    container = f"wh{uuid.uuid4().hex[:12]}"
    return container, worker_env(hub_cs, azurite.connection_string, checkpoint_container,
                                 f"abfs://{container}/{PREFIX}",
                                 AMLWH_WAREHOUSE__CONNECTION_STRING=proxied(azurite, proxy),
                                 AMLWH_WAREHOUSE__CACHE_DIR=str(tmp_path / "cache"),
                                 AMLWH_WAREHOUSE__WORK_DIR=str(tmp_path / "work"), **extra)


class Mirror:
    """The remote warehouse's Parquet blobs, read from Azurite directly and copied into a local
    folder as they appear (a commit's blobs are never changed, and none is deleted here: no
    compaction round runs within these tests' default 300 s interval), with what they hold:
    event ids per table kind, dead-letter coordinates."""

    def __init__(self, azurite, container: str, root: Path) -> None:
        self.client = ContainerClient.from_connection_string(azurite.connection_string, container)
        self.root = root
        self.copied: set[str] = set()
        self.raw: set[str] = set()  # event ids in raw_events (and ignored_events: also durable)
        self.facts: set[str] = set()  # event ids in the fact tables
        self.dead: set[tuple[str, int]] = set()  # (partition, sequence number) of dead letters

    def sync(self) -> Mirror:
        start = len(PREFIX) + 1
        for blob in self.client.list_blobs(name_starts_with=PREFIX + "/"):
            name = blob.name[start:]
            if not name.endswith(".parquet") or name in self.copied:
                continue
            path = self.root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(self.client.download_blob(blob.name).readall())
            self.copied.add(name)
            table = name.split("/", 1)[0]
            if table == "dead_letters":
                rows = pq.read_table(path, columns=["partition_id", "sequence_number"]).to_pylist()
                self.dead.update((r["partition_id"], r["sequence_number"]) for r in rows)
            elif table in ("raw_events", "ignored_events") or table in EVENT_TABLES:
                ids = pq.read_table(path, columns=["event_id"])["event_id"].to_pylist()
                (self.facts if table in EVENT_TABLES else self.raw).update(ids)
        return self

    def results(self) -> dict:
        return results(self.root.resolve())

    def close(self) -> None:
        self.client.close()


def event_id(body: bytes) -> str:
    obj = orjson.loads(body)
    return (obj[0] if isinstance(obj, list) else obj)["id"]


class Truth:
    """What each partition holds, by sequence number: an event id or (poison) None."""

    def __init__(self, work: Workload) -> None:
        poison = set(work.poison)
        self.messages = {str(p): [None if body in poison else event_id(body)
                                  for part in work.slices for body in part[p::PARTITIONS]]
                         for p in range(PARTITIONS)}

    def not_durable(self, cps: dict[str, int], mirror: Mirror) -> dict[str, list[int]]:
        """Partition -> sequence numbers at or before its checkpoint whose event (or dead
        letter) is not in the warehouse's blobs."""
        missing = {}
        for pid, upto in cps.items():
            gone = [seq for seq, eid in enumerate(self.messages[pid][:upto + 1])
                    if ((pid, seq) not in mirror.dead if eid is None else eid not in mirror.raw)]
            if gone:
                missing[pid] = gone
        return missing

    def check(self, cps: dict[str, int], mirror: Mirror) -> None:
        missing = self.not_durable(cps, mirror)
        assert not missing, (
            f"checkpoints {cps} cover messages whose rows are not stored: "
            + "; ".join(f"partition {p}: {len(s)} (sequence {s[:5]}...)" for p, s in missing.items()))


def sample(storage, container: str, prefix: str, mirror: Mirror, truth: Truth) -> dict[str, int]:
    """Checkpoints first, then the blobs: rows only ever appear, so whatever was stored when
    a checkpoint was read is listed afterwards."""
    cps = checkpoints(storage, container, prefix)
    truth.check(cps, mirror.sync())
    return cps


def wait_stored_and_checkpointed(storage, container, prefix, mirror, truth, local_hub, hub, proc, timeout=90):
    """Until every partition is checkpointed at its last message, checking at each sample that
    no checkpoint covers a message whose rows are not stored (so, at the end, all are)."""
    def done():
        cps = sample(storage, container, prefix, mirror, truth)
        return cps == last_sequences(local_hub, hub) and cps
    return wait_until(done, timeout, "every partition stored and checkpointed at its end", proc=proc, interval=0.5)


def test_proxy_cuts_at_a_request_line_and_resumes(azurite, checkpoint_container, proxy):
    """The proxy itself, on a keep-alive connection of the blob SDK: requests before the
    matching one pass, the matching one is not forwarded, new connections fail until
    resume() (reset, then refused), and the path works again after it."""
    client = ContainerClient.from_connection_string(proxied(azurite, proxy), checkpoint_container,
                                                    retry_total=0, connection_timeout=5)
    direct = ContainerClient.from_connection_string(azurite.connection_string, checkpoint_container)
    with client, direct:
        client.upload_blob(f"{PREFIX}/run_events/a.parquet", b"a" * 300_000)
        proxy.cut_on(raw_put(checkpoint_container))
        client.upload_blob(f"{PREFIX}/run_events/b.parquet", b"b" * 10)  # same connection, not matched
        with pytest.raises((ServiceRequestError, ServiceResponseError)):  # the connection was reset
            client.upload_blob(f"{PREFIX}/raw_events/c.parquet", b"c" * 10)
        assert proxy.wait_cut(0) and proxy.cut_request.startswith(f"PUT /{ACCOUNT}/{checkpoint_container}/"
                                                                  f"{PREFIX}/raw_events/c.parquet")
        for mode in ("reset", "refuse"):
            proxy.resume()
            proxy.cut(mode)
            with pytest.raises((ServiceRequestError, ServiceResponseError)):
                client.upload_blob(f"{PREFIX}/run_events/{mode}.parquet", b"x")
        proxy.resume()
        client.upload_blob(f"{PREFIX}/raw_events/c.parquet", b"c" * 10)
        stored = {b.name: b.size for b in direct.list_blobs(name_starts_with=PREFIX + "/")}
    assert stored == {f"{PREFIX}/run_events/a.parquet": 300_000, f"{PREFIX}/run_events/b.parquet": 10,
                      f"{PREFIX}/raw_events/c.parquet": 10}
    assert proxy.cuts == 3 and not proxy.is_cut
    put = f"PUT /{ACCOUNT}/{checkpoint_container}/{PREFIX}"
    assert [r for r in proxy.seen() if r.startswith(put)] == [
        f"{put}/run_events/a.parquet", f"{put}/run_events/b.parquet", f"{put}/raw_events/c.parquet",
        f"{put}/raw_events/c.parquet"]  # the cut ones never reached the proxy's request parser


def test_blob_outage_mid_flush_checkpoints_nothing_unstored_and_the_worker_recovers(
        tmp_path, local_hub, make_hub, azurite, checkpoint_container, proxy):
    work = Workload(runs=160, seed=23, slices=8)
    truth = Truth(work)
    hub = make_hub(PARTITIONS)
    cs = local_hub.connection_string(hub)
    container, env = proxied_worker(tmp_path, cs, azurite, checkpoint_container, proxy)  # patience: 300 s
    mirror = Mirror(azurite, container, tmp_path / "mirror")
    prefix = blob_prefix(local_hub, hub)
    log = tmp_path / "worker.log"
    sender = Sender(cs, work.slices, pause_s=0.7, partitions=PARTITIONS, hold_last=3)
    proc = None
    try:
        proc = start_worker(env, log)
        wait_for_claims(proc, PARTITIONS)
        sender.start()
        # some commits go through whole and are checkpointed on every partition, then the trap
        wait_until(lambda: len(sample(azurite, checkpoint_container, prefix, mirror, truth)) == PARTITIONS,
                   60, "a checkpoint on every partition", proc=proc, interval=0.3)
        proxy.cut_on(raw_put(container))
        if not proxy.wait_cut(20):  # the slices sent so far were all stored before the trap
            sender.release()
            assert proxy.wait_cut(60), "no raw_events upload after the trap was set"
        cut_at = time.monotonic()
        sent_at_cut = sender.sent
        mirror.sync()
        # the middle of a commit: fact rows stored whose raw rows are not
        orphan_facts = mirror.facts - mirror.raw
        assert orphan_facts, f"no fact rows without raw rows at the cut ({proxy.cut_request})"
        at_cut = checkpoints(azurite, checkpoint_container, prefix)
        sender.release()  # the rest of the stream arrives during the outage

        samples = []

        def outage_met():
            samples.append(sample(azurite, checkpoint_container, prefix, mirror, truth))
            warnings = RETRY_WARNING.findall(log.read_text(errors="replace"))
            return len(warnings) >= 2 and sender.sent == len(work.slices) and len(samples) >= 5

        wait_until(outage_met, 60, "retries during the outage and the whole stream sent", proc=proc,
                   interval=0.3)
        outage_s = time.monotonic() - cut_at
        assert proc.poll() is None, "the worker gave up during a short outage"
        during = checkpoints(azurite, checkpoint_container, prefix)
        proxy.resume()
        sender.finish()

        final = wait_stored_and_checkpointed(azurite, checkpoint_container, prefix, mirror, truth,
                                             local_hub, hub, proc)
        res = mirror.results()
        code = stop_worker(proc)
    finally:
        sender.release()
        if proc is not None:
            kill(proc)
        mirror.close()
    assert code == 0
    text = assert_clean_log(log)
    warnings = RETRY_WARNING.findall(text)
    assert warnings and all(what == file for what, _, _, file in warnings), warnings
    assert {kind for _, kind, _, _ in warnings} <= {"ServiceRequestError", "ServiceResponseError"}, warnings
    # every event whose fact rows were stored alone at the cut got its raw row after the outage
    assert orphan_facts <= mirror.raw
    assert mirror.raw == {eid for eids in truth.messages.values() for eid in eids if eid is not None}
    assert all(len(truth.messages[pid]) == seq + 1 for pid, seq in final.items())
    print(f"\ncut at {proxy.cut_request!r} ({sent_at_cut}/{len(work.slices)} slices sent); outage "
          f"{outage_s:.1f}s, {len(samples)} samples of the checkpoints during it: at the cut {at_cut}, "
          f"before resuming {during}, at the end {final}; "
          f"{len(orphan_facts)} events with fact rows but no raw row at the cut; "
          f"{len(warnings)} retry warning(s); {res['stored'] - res['events']} redelivered copies")
    assert during == at_cut, "checkpoints moved while the warehouse took nothing"
    assert_exactly_once(res, work)


def test_outage_longer_than_patience_stops_the_worker_and_a_restart_completes(
        tmp_path, local_hub, make_hub, azurite, checkpoint_container, proxy):
    work = Workload(runs=60, seed=29, slices=2)
    truth = Truth(work)
    hub = make_hub(PARTITIONS)
    cs = local_hub.connection_string(hub)
    container, env = proxied_worker(tmp_path, cs, azurite, checkpoint_container, proxy,
                                    AMLWH_WAREHOUSE__UPLOAD_PATIENCE_S="3")
    mirror = Mirror(azurite, container, tmp_path / "mirror")
    prefix = blob_prefix(local_hub, hub)
    logs = [tmp_path / "worker1.log", tmp_path / "worker2.log"]
    proc = None
    try:
        proc = start_worker(env, logs[0])
        wait_for_claims(proc, PARTITIONS)
        asyncio.run(send_spread(cs, work.slices[0], PARTITIONS))
        first = wait_stored_and_checkpointed(azurite, checkpoint_container, prefix, mirror, truth,
                                             local_hub, hub, proc)
        proxy.cut_on(raw_put(container))
        asyncio.run(send_spread(cs, work.slices[1], PARTITIONS))
        assert proxy.wait_cut(60), "no raw_events upload after the trap was set"
        cut_at = time.monotonic()
        code = proc.wait(60)  # an outage without end: patience runs out
        gave_up_s = time.monotonic() - cut_at
        stopped = checkpoints(azurite, checkpoint_container, prefix)
        truth.check(stopped, mirror.sync())
        unstored = truth.not_durable(last_sequences(local_hub, hub), mirror)
        assert unstored, "the failed commit's events are all stored: the cut came too late"

        proxy.resume()  # the outage ends; the operator runs the worker again
        env["AMLWH_WAREHOUSE__UPLOAD_PATIENCE_S"] = "300"
        proc = start_worker(env, logs[1])
        final = wait_stored_and_checkpointed(azurite, checkpoint_container, prefix, mirror, truth,
                                             local_hub, hub, proc)
        res = mirror.results()
        assert stop_worker(proc) == 0
    finally:
        if proc is not None:
            kill(proc)
        mirror.close()
    text = logs[0].read_text(errors="replace")
    assert code != 0, text[-3000:]
    assert "Traceback" not in text, text[-3000:]
    message = [line for line in text.splitlines() if line.startswith("amlwh:")]
    assert message and "Blob Storage" in message[-1] and "Nothing of this commit was acknowledged" in message[-1], \
        text[-3000:]
    assert "stopped: flushed" not in text
    assert_clean_log(logs[1])
    assert all(len(truth.messages[pid]) == seq + 1 for pid, seq in final.items())
    print(f"\nthe worker gave up {gave_up_s:.1f}s after the cut with exit code {code}; checkpoints "
          f"{first} before the cut, {stopped} after it ({sum(len(s) for s in unstored.values())} messages "
          f"unstored); the restart ended at {final}; {res['stored'] - res['events']} redelivered copies")
    assert_exactly_once(res, work)
