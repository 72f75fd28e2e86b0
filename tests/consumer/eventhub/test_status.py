"""`amlwh status`: the rows computed from the SDK's dicts (pure), then the command against the
local hub and Azurite, while a worker owns the partitions and after it stopped."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timezone

import pytest

from consumer.eventhub.status import StatusReport, partition_rows, to_json, to_table
from devstack.sdk_helpers import send_events
from tests.support.cli import amlwh
from tests.support.events import run_event
from tests.support.worker import log_tail, start_worker, stop_worker, wait_until, worker_env

NOW = 1_800_000_000.0


def props(pid: str, beginning: int, last: int, last_at: float | None = NOW - 5, empty: bool = False) -> dict:
    return {"eventhub_name": "eh1", "id": pid, "beginning_sequence_number": beginning,
            "last_enqueued_sequence_number": last, "last_enqueued_offset": str(last * 100),
            "last_enqueued_time_utc": None if last_at is None else datetime.fromtimestamp(last_at, timezone.utc),
            "is_empty": empty}


def owned(pid: str, owner: str, at: float) -> dict:
    return {"partition_id": pid, "owner_id": owner, "last_modified_time": at, "etag": "x"}


def checkpoint(pid: str, seq: int) -> dict:
    return {"partition_id": pid, "sequence_number": seq, "offset": str(seq * 100)}


def rows(properties, ownership=(), checkpoints=(), times=None, expiration_s=60.0):
    return {r.partition_id: r for r in partition_rows(
        list(properties), properties, list(ownership), list(checkpoints), times or {}, now_s=NOW,
        expiration_s=expiration_s)}


def test_lag_is_last_enqueued_minus_checkpointed_sequence():
    got = rows({"0": props("0", 0, 41)}, [owned("0", "w1", NOW - 3)], [checkpoint("0", 30)], {"0": NOW - 20})
    row = got["0"]
    assert (row.owner, row.owner_expired, row.checkpoint_sequence_number, row.checkpoint_offset) == ("w1", False, 30, "3000")
    assert (row.last_enqueued_sequence_number, row.last_enqueued_offset) == (41, "4100")
    assert row.lag_events == 11
    assert row.lag_s == pytest.approx(15.0)  # last enqueued (NOW-5) - checkpoint written (NOW-20)


def test_a_caught_up_partition_has_no_lag_in_events_or_seconds():
    row = rows({"0": props("0", 0, 30)}, checkpoints=[checkpoint("0", 30)], times={"0": NOW - 100})["0"]
    assert (row.lag_events, row.lag_s) == (0, 0.0)


def test_without_a_checkpoint_every_retained_event_is_lag_and_the_seconds_are_unknown():
    row = rows({"0": props("0", 7, 16)})["0"]
    assert (row.checkpoint_sequence_number, row.checkpointed_at, row.owner) == (None, None, None)
    assert (row.lag_events, row.lag_s) == (10, None)  # sequence numbers 7..16


def test_an_empty_partition_has_no_lag_and_no_last_event():
    row = rows({"0": props("0", 0, -1, last_at=None, empty=True)})["0"]
    assert (row.lag_events, row.lag_s, row.last_enqueued_sequence_number, row.last_enqueued_at) == (0, 0.0, None, None)


def test_a_checkpoint_written_after_the_last_event_gives_zero_seconds_not_negative():
    row = rows({"0": props("0", 0, 50, last_at=NOW - 30)}, checkpoints=[checkpoint("0", 40)], times={"0": NOW - 10})["0"]
    assert (row.lag_events, row.lag_s) == (10, 0.0)


def test_ownership_expires_after_the_interval_and_a_released_claim_has_no_owner():
    got = rows({"0": props("0", 0, 1), "1": props("1", 0, 1), "2": props("2", 0, 1)},
               [owned("0", "w1", NOW - 61), owned("1", "w1", NOW - 59), owned("2", "", NOW - 1)])
    assert (got["0"].owner, got["0"].owner_expired) == ("w1", True)
    assert (got["1"].owner, got["1"].owner_expired) == ("w1", False)
    assert (got["2"].owner, got["2"].owner_expired) == (None, False)


def test_rows_follow_numeric_partition_order_and_outputs_agree():
    properties = {pid: props(pid, 0, 3) for pid in ("10", "2", "0")}
    listed = partition_rows(["10", "2", "0"], properties, [], [checkpoint("2", 1)], {"2": NOW - 9},
                            now_s=NOW, expiration_s=60)
    assert [r.partition_id for r in listed] == ["0", "2", "10"]
    report = StatusReport("ns:5672", "eh1", "$Default", NOW, listed)
    doc = to_json(report)
    assert doc["lag_events"] == 4 + 2 + 4 and json.loads(json.dumps(doc)) == doc
    assert doc["partitions"][1]["checkpointed_at"] == datetime.fromtimestamp(NOW - 9, timezone.utc) \
        .isoformat(timespec="milliseconds").replace("+00:00", "Z")
    table = to_table(report).splitlines()
    assert table[0].startswith("hub eh1 at ns:5672, consumer group $Default")
    assert table[1].split()[:2] == ["partition", "owner"]
    assert [line.split()[0] for line in table[2:5]] == ["0", "2", "10"]
    assert table[-1] == "total lag: 10 event(s)"


# ------------------------------------------------------------------ against the local stack

SENT = {"0": 5, "1": 3, "2": 0, "3": 7}  # events per partition; partition 2 stays empty
MORE = {"0": 4, "1": 0, "2": 2, "3": 1}  # sent while no worker runs


def body(pid: str, n: int) -> bytes:
    return run_event(f"r-{pid}-{n}", "Running", "2025-03-01T10:00:00Z")


def send_per_partition(cs: str, counts: dict[str, int], start: int = 0) -> None:
    async def go():
        for pid, n in counts.items():
            if n:
                await send_events(cs, [body(pid, start + i) for i in range(n)], partition_id=pid)
    asyncio.run(go())


async def claims_and_checkpoints(local_hub, hub: str, azurite, container: str) -> tuple[set, dict]:
    from azure.eventhub.extensions.checkpointstoreblobaio import BlobCheckpointStore

    namespace = f"{local_hub.host}:{local_hub.port}"
    async with BlobCheckpointStore.from_connection_string(azurite.connection_string, container) as store:
        owners = {o["partition_id"] for o in await store.list_ownership(namespace, hub, "$Default") if o["owner_id"]}
        saved = {c["partition_id"]: c["sequence_number"] for c in await store.list_checkpoints(namespace, hub, "$Default")}
    return owners, saved


def status_json(env: dict) -> dict:
    return json.loads(amlwh("status", "--json", env=env).stdout)


@pytest.mark.integration
def test_status_shows_owners_checkpoints_and_lag_on_the_local_hub(tmp_path, local_hub, make_hub, azurite,
                                                                   checkpoint_container):
    hub = make_hub(4)
    cs = local_hub.connection_string(hub)
    send_per_partition(cs, SENT)
    env = worker_env(cs, azurite.connection_string, checkpoint_container, tmp_path / "wh",
                     AMLWH_LOGGING__FORMAT="json")
    log = tmp_path / "worker.log"
    worker = start_worker(env, log)
    try:
        def caught_up():  # read in-process, as status reads them: cheaper to poll than the CLI
            owners, saved = asyncio.run(claims_and_checkpoints(local_hub, hub, azurite, checkpoint_container))
            return len(owners) == 4 and saved == {pid: n - 1 for pid, n in SENT.items() if n}

        wait_until(caught_up, 60, "every partition owned and checkpointed", proc=worker)
        doc = status_json(env)
    finally:
        assert stop_worker(worker) == 0, log_tail(log)
    assert (doc["hub"], doc["consumer_group"], doc["namespace"]) == (hub, "$Default", f"{local_hub.host}:{local_hub.port}")
    parts = {p["partition_id"]: p for p in doc["partitions"]}
    assert sorted(parts) == ["0", "1", "2", "3"]
    assert len({p["owner"] for p in parts.values()}) == 1  # the one worker
    for pid, n in SENT.items():
        p = parts[pid]
        assert not p["owner_expired"]
        assert p["last_enqueued_sequence_number"] == (n - 1 if n else None), p
        assert p["checkpoint_sequence_number"] == (n - 1 if n else None), p  # what was delivered
        assert (p["lag_events"], p["lag_s"]) == (0, 0.0), p
    # the worker's own log was JSON all along: one object a line
    records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    assert any(r["logger"] == "amlwh.worker" and r["message"] == "partition 0 claimed" for r in records)
    assert all({"ts", "level", "logger", "message"} <= set(r) for r in records)

    send_per_partition(cs, MORE, start=100)  # no worker runs now
    after = status_json(env)
    parts = {p["partition_id"]: p for p in after["partitions"]}
    for pid, more in MORE.items():
        p = parts[pid]
        assert p["lag_events"] == more, p
        assert p["last_enqueued_sequence_number"] == (SENT[pid] + more - 1 if SENT[pid] + more else None), p
        assert p["checkpoint_sequence_number"] == (SENT[pid] - 1 if SENT[pid] else None), p
        assert p["owner"] is None, p  # the stopped worker released its claims
        if more and SENT[pid]:
            assert p["lag_s"] > 0, p
    assert after["lag_events"] == sum(MORE.values())
    # partition 2 had no checkpoint: its 2 events are all lag, their age unknown
    assert parts["2"]["lag_s"] is None

    table = amlwh("status", env=env).stdout.splitlines()
    assert table[-1] == f"total lag: {sum(MORE.values())} event(s)"
    row0 = next(line.split() for line in table if line.split()[:1] == ["0"])
    assert row0[1] == "-" and row0[-2] == "4"  # no owner; 4 events behind
