"""`amlwh status`: per partition, who owns it, where its checkpoint is, and how far behind.

Read from the two places the workers share, without joining the consumer group: the
checkpoint store (the SDK's BlobCheckpointStore: ownership and checkpoints of the
namespace / hub / consumer group the worker uses) and the hub (partition ids and each
partition's properties, through the management node: no receiver is opened).

`partition_rows` is the pure part: the SDK's dicts and a clock reading in, rows out.

Lag, per partition:
- events: last enqueued sequence number - checkpointed sequence number. Without a
  checkpoint, every event the partition retains (last - beginning + 1), whatever
  [eventhub] starting_position would skip. An empty partition has none.
- seconds: 0 when no event is behind; else last enqueued time - when the checkpoint was
  last written (the checkpoint blob's modification time: a checkpoint records no event
  time), i.e. how long the hub has been taking events the checkpoint does not cover. A
  worker catching up a backlog checkpoints at every flush, so there read the events, not
  the seconds. Without a checkpoint, unknown (None).
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any

from consumer.config import Settings
from consumer.eventhub.checkpoints import checkpoint_prefix, store_container
from consumer.eventhub.clients import client_namespace, eventhub_name
from consumer.eventhub.identity import credential_for
from consumer.eventhub.probes import (
    TIMEOUT_S,
    hub_error,
    probe_clients,
    reach_hub,
    store_error,
    store_location,
)


@dataclass(frozen=True)
class PartitionStatus:
    partition_id: str
    owner: str | None  # the owning worker's event processor id; None: unclaimed or released
    owner_expired: bool  # not renewed within [eventhub] ownership_expiration_s: any worker may take it
    ownership_modified_at: float | None  # epoch seconds
    checkpoint_offset: str | None
    checkpoint_sequence_number: int | None
    checkpointed_at: float | None  # epoch seconds: when the checkpoint blob was last written
    beginning_sequence_number: int | None
    last_enqueued_sequence_number: int | None  # None: the partition is empty
    last_enqueued_offset: str | None
    last_enqueued_at: float | None  # epoch seconds
    lag_events: int
    lag_s: float | None


@dataclass(frozen=True)
class StatusReport:
    namespace: str
    hub: str
    consumer_group: str
    checked_at: float
    partitions: list[PartitionStatus]

    @property
    def lag_events(self) -> int:
        return sum(p.lag_events for p in self.partitions)


def _epoch(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).timestamp()
    return float(value)


def _lag(props: dict, checkpoint: dict | None, checkpointed_at: float | None) -> tuple[int, float | None]:
    if props.get("is_empty") or props.get("last_enqueued_sequence_number") is None:
        return 0, 0.0
    last = int(props["last_enqueued_sequence_number"])
    if checkpoint is None:
        return max(0, last - int(props.get("beginning_sequence_number") or 0) + 1), None
    events = max(0, last - int(checkpoint["sequence_number"]))
    if events == 0:
        return 0, 0.0
    enqueued = _epoch(props.get("last_enqueued_time_utc"))
    if enqueued is None or checkpointed_at is None:
        return events, None
    return events, max(0.0, enqueued - checkpointed_at)


def partition_rows(partition_ids: list[str], properties: dict[str, dict], ownership: list[dict],
                   checkpoints: list[dict], checkpoint_times: dict[str, float], *, now_s: float,
                   expiration_s: float) -> list[PartitionStatus]:
    """One row per partition id, ordered numerically when the ids are numbers."""
    owned = {o["partition_id"]: o for o in ownership}
    saved = {c["partition_id"]: c for c in checkpoints}
    rows = []
    for pid in sorted(partition_ids, key=lambda p: (not p.isdigit(), int(p) if p.isdigit() else 0, p)):
        props = properties.get(pid, {})
        own = owned.get(pid)
        owner = (own or {}).get("owner_id") or None  # "" is a released claim
        modified = _epoch((own or {}).get("last_modified_time"))
        expired = owner is not None and (modified is None or now_s - modified > expiration_s)
        checkpoint = saved.get(pid)
        at = checkpoint_times.get(pid) if checkpoint is not None else None
        empty = bool(props.get("is_empty"))
        lag_events, lag_s = _lag(props, checkpoint, at)
        rows.append(PartitionStatus(
            partition_id=pid, owner=owner, owner_expired=expired, ownership_modified_at=modified,
            checkpoint_offset=None if checkpoint is None else str(checkpoint["offset"]),
            checkpoint_sequence_number=None if checkpoint is None else int(checkpoint["sequence_number"]),
            checkpointed_at=at, beginning_sequence_number=props.get("beginning_sequence_number"),
            last_enqueued_sequence_number=None if empty else props.get("last_enqueued_sequence_number"),
            last_enqueued_offset=None if empty else props.get("last_enqueued_offset"),
            last_enqueued_at=None if empty else _epoch(props.get("last_enqueued_time_utc")),
            lag_events=lag_events, lag_s=lag_s))
    return rows


# ------------------------------------------------------------------ output

def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


_TIMES = ("ownership_modified_at", "checkpointed_at", "last_enqueued_at")


def to_json(report: StatusReport) -> dict:
    """Plain JSON values: times as ISO 8601 UTC strings, lag_s rounded to milliseconds."""
    partitions = []
    for row in report.partitions:
        doc = asdict(row)
        for name in _TIMES:
            doc[name] = _iso(doc[name])
        doc["lag_s"] = None if row.lag_s is None else round(row.lag_s, 3)
        partitions.append(doc)
    return {"namespace": report.namespace, "hub": report.hub, "consumer_group": report.consumer_group,
            "checked_at": _iso(report.checked_at), "lag_events": report.lag_events, "partitions": partitions}


def _ago(epoch: float | None, now: float) -> str:
    return "-" if epoch is None else f"{max(0.0, now - epoch):,.0f}s ago"


def to_table(report: StatusReport) -> str:
    head = ("partition", "owner", "claimed", "checkpoint offset", "seq", "checkpointed",
            "last seq", "last enqueued", "lag", "lag s")
    now = report.checked_at
    body = []
    for r in report.partitions:
        owner = "-" if r.owner is None else r.owner + (" (expired)" if r.owner_expired else "")
        body.append((
            r.partition_id, owner, _ago(r.ownership_modified_at, now) if r.owner else "-",
            r.checkpoint_offset or "-", "-" if r.checkpoint_sequence_number is None else str(r.checkpoint_sequence_number),
            _ago(r.checkpointed_at, now), "-" if r.last_enqueued_sequence_number is None else str(r.last_enqueued_sequence_number),
            _iso(r.last_enqueued_at) or "-", f"{r.lag_events:,}", "-" if r.lag_s is None else f"{r.lag_s:,.1f}"))
    widths = [max(len(h), *(len(row[i]) for row in body)) if body else len(h) for i, h in enumerate(head)]
    lines = [(f"hub {report.hub} at {report.namespace}, consumer group {report.consumer_group}, "
              f"as of {_iso(now)}")]
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in (head, *body)]
    lines.append(f"total lag: {report.lag_events:,} event(s)")
    return "\n".join(lines)


# ------------------------------------------------------------------ reading

async def _read_hub(client) -> tuple[str, list[str], dict[str, dict]]:
    async with client:
        ids = await client.get_partition_ids()
        props = await asyncio.gather(*(client.get_partition_properties(pid) for pid in ids))
        return client_namespace(client), ids, dict(zip(ids, props))


async def _read_store(store, namespace: str, hub: str, group: str) -> tuple[list, list, dict[str, float]]:
    ownership = await store.list_ownership(namespace, hub, group)
    checkpoints = await store.list_checkpoints(namespace, hub, group)
    times = {}
    async for blob in store_container(store).list_blobs(name_starts_with=checkpoint_prefix(namespace, hub, group)):
        if blob.last_modified is not None:
            times[blob.name.rsplit("/", 1)[-1]] = blob.last_modified.timestamp()
    return list(ownership), list(checkpoints), times


async def read_status(settings: Settings, now_s) -> StatusReport:
    """Read the hub, then the store; `now_s()` stamps the report. Failures of either are
    raised as the same PreflightErrors `amlwh run` words them with."""
    async with credential_for(settings) as credential:
        return await _read_status(settings, now_s, credential)


async def _read_status(settings: Settings, now_s, credential) -> StatusReport:
    eh = settings.eventhub
    hub = eventhub_name(eh)
    client, store = probe_clients(eh, settings.checkpoint, credential)  # a missing setting before any dialling
    await reach_hub(eh)
    try:
        namespace, ids, props = await asyncio.wait_for(_read_hub(client), TIMEOUT_S)
    except Exception as exc:
        explained = hub_error(exc, eh, hub)
        if explained is None:
            raise
        raise explained from None
    location = store_location(store, settings.checkpoint)
    try:
        async with store:
            ownership, checkpoints, times = await asyncio.wait_for(
                _read_store(store, namespace, hub, eh.consumer_group), TIMEOUT_S)
    except Exception as exc:
        explained = store_error(exc, location, settings.checkpoint)
        if explained is None:
            raise
        raise explained from None
    now = now_s()
    rows = partition_rows(ids, props, ownership, checkpoints, times, now_s=now,
                          expiration_s=eh.ownership_expiration_s)
    return StatusReport(namespace, hub, eh.consumer_group, now, rows)


def status(settings: Settings, now_s) -> StatusReport:
    return asyncio.run(read_status(settings, now_s))
