"""Event hubs, partitions and their event logs (in memory, optionally persisted to a directory).

Each partition is an append-only log. An event's offset is the byte position of its record in
the partition's log file (as in the real service, offsets are opaque, increasing and not
contiguous); sequence numbers count from 0. Both are computed the same way whether or not the
log is persisted, so a restarted hub hands out the same positions.

An event is stored already encoded for delivery: `prefix` (the header section, if any) and
`tail` (message annotations with the x-opt-* service annotations, then the remaining sections).
Delivery annotations, which differ per delivery, go between the two.
"""

from __future__ import annotations

import bisect
import json
import os
import re
import time
from dataclasses import dataclass, field
from typing import Callable

from .amqp_encode import enc_long, enc_map_entries, enc_str, enc_sym, enc_timestamp
from .partition_key import partition_for_key

RECORD_HEADER_SIZE = 16  # payload length u32, prefix length u32, enqueued time ms i64
DEFAULT_CONSUMER_GROUP = "$Default"
SERVICE_ANNOTATIONS = (b"x-opt-sequence-number", b"x-opt-offset", b"x-opt-enqueued-time")


@dataclass
class IncomingEvent:
    """One event as parsed from a producer transfer, before the hub stamps it."""

    prefix: bytes
    annotation_entries: list[bytes]  # raw `key + value` map entries supplied by the client
    partition_key: str | None
    rest: bytes


class Partition:
    def __init__(self, hub_name: str, partition_id: str, log_path: str | None):
        self.hub_name = hub_name
        self.id = partition_id
        self.prefixes: list[bytes] = []
        self.tails: list[bytes] = []
        self.offsets: list[int] = []
        self.times_ms: list[int] = []
        self.next_offset = 0
        self.listeners: set[Callable[[], None]] = set()
        self._log = None
        if log_path is not None:
            self._load(log_path)
            self._log = open(log_path, "ab", buffering=0)

    def __len__(self) -> int:
        return len(self.tails)

    def _load(self, path: str) -> None:
        if not os.path.exists(path):
            return
        with open(path, "rb") as fh:
            data = fh.read()
        pos = 0
        while pos + RECORD_HEADER_SIZE <= len(data):
            size = int.from_bytes(data[pos : pos + 4], "big")
            prefix_len = int.from_bytes(data[pos + 4 : pos + 8], "big")
            when = int.from_bytes(data[pos + 8 : pos + 16], "big", signed=True)
            body = pos + RECORD_HEADER_SIZE
            if body + size > len(data):
                break  # torn write from a killed hub: drop the partial record
            self.prefixes.append(data[body : body + prefix_len])
            self.tails.append(data[body + prefix_len : body + size])
            self.offsets.append(pos)
            self.times_ms.append(when)
            pos = body + size
        if pos != len(data):
            with open(path, "r+b") as fh:
                fh.truncate(pos)
        self.next_offset = pos

    def append(self, events: list[IncomingEvent]) -> list[int]:
        """Stamp and store events; returns their sequence numbers."""
        now_ms = int(time.time() * 1000)
        # Enqueued times never go backwards within a partition, so time filters can bisect.
        when = max(now_ms, self.times_ms[-1]) if self.times_ms else now_ms
        records = []
        seqs = []
        for ev in events:
            seq = len(self.tails)
            offset = self.next_offset
            stamps = [
                enc_sym(b"x-opt-sequence-number") + enc_long(seq),
                enc_sym(b"x-opt-offset") + enc_str(str(offset)),  # a string: the SDK decodes bytes
                enc_sym(b"x-opt-enqueued-time") + enc_timestamp(when),
            ]
            annotations = b"\x00\x53\x72" + enc_map_entries(ev.annotation_entries + stamps)
            tail = annotations + ev.rest
            size = len(ev.prefix) + len(tail)
            self.prefixes.append(ev.prefix)
            self.tails.append(tail)
            self.offsets.append(offset)
            self.times_ms.append(when)
            self.next_offset = offset + RECORD_HEADER_SIZE + size
            seqs.append(seq)
            if self._log is not None:
                head = size.to_bytes(4, "big") + len(ev.prefix).to_bytes(4, "big")
                records.append(head + when.to_bytes(8, "big", signed=True) + ev.prefix + tail)
        if records:
            self._log.write(b"".join(records))
        for notify in list(self.listeners):
            notify()
        return seqs

    def start_index(self, kind: str, inclusive: bool, value: str) -> int:
        """Index of the first event matching an event-position filter."""
        n = len(self.tails)
        if kind == "offset":
            if value == "@latest":
                return n
            target = int(value)
            if target < 0:
                return 0
            pick = bisect.bisect_left if inclusive else bisect.bisect_right
            return pick(self.offsets, target)
        if kind == "sequence":
            seq = int(value)
            return max(0, min(n, seq if inclusive else seq + 1))
        if kind == "time":
            pick = bisect.bisect_left if inclusive else bisect.bisect_right
            return pick(self.times_ms, int(value))
        raise ValueError(f"unknown position kind {kind}")

    def properties(self) -> dict:
        empty = not self.tails
        return {
            "begin_sequence_number": 0,
            "last_enqueued_sequence_number": len(self.tails) - 1,
            "last_enqueued_offset": "-1" if empty else str(self.offsets[-1]),
            "last_enqueued_time_utc": 0 if empty else self.times_ms[-1],
            "is_partition_empty": empty,
        }

    def close(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


@dataclass
class Hub:
    name: str
    partition_ids: list[str]
    created_at_ms: int
    consumer_groups: set[str]  # lower-cased: the service treats them case-insensitively
    partitions: dict[str, Partition] = field(default_factory=dict)
    _round_robin: int = -1

    def route(self, partition_id: str | None, partition_key: str | None) -> Partition:
        if partition_id is not None:
            return self.partitions[partition_id]
        if partition_key is not None:
            return self.partitions[partition_for_key(partition_key, self.partition_ids)]
        self._round_robin = (self._round_robin + 1) % len(self.partition_ids)
        return self.partitions[self.partition_ids[self._round_robin]]

    def has_consumer_group(self, name: str) -> bool:
        return name.lower() in self.consumer_groups


_SELECTOR = re.compile(
    r"^\s*amqp\.annotation\.x-opt-(offset|sequence-number|enqueued-time)\s*(>=|>)\s*'([^']*)'\s*$"
)
_KINDS = {"offset": "offset", "sequence-number": "sequence", "enqueued-time": "time"}


def parse_selector(expression: str) -> tuple[str, bool, str]:
    """`amqp.annotation.x-opt-offset > '-1'` -> ("offset", False, "-1")."""
    m = _SELECTOR.match(expression)
    if not m:
        raise ValueError(f"unsupported selector filter: {expression!r}")
    return _KINDS[m.group(1)], m.group(2) == ">=", m.group(3)


class EventStore:
    def __init__(self, persist_dir: str | None = None):
        self.persist_dir = persist_dir
        self.hubs: dict[str, Hub] = {}
        if persist_dir:
            os.makedirs(persist_dir, exist_ok=True)
            for spec in self._read_catalog():
                self._open_hub(spec["name"], spec["partitions"], spec["consumer_groups"], spec["created_at_ms"])

    def _catalog_path(self) -> str:
        return os.path.join(self.persist_dir or "", "hubs.json")

    def _read_catalog(self) -> list[dict]:
        try:
            with open(self._catalog_path()) as fh:
                return json.load(fh)
        except FileNotFoundError:
            return []

    def _write_catalog(self) -> None:
        specs = [
            {"name": h.name, "partitions": len(h.partition_ids), "created_at_ms": h.created_at_ms,
             "consumer_groups": sorted(h.consumer_groups)}
            for h in self.hubs.values()
        ]
        tmp = self._catalog_path() + ".tmp"
        with open(tmp, "w") as fh:
            json.dump(specs, fh)
        os.replace(tmp, self._catalog_path())

    def _open_hub(self, name: str, partitions: int, consumer_groups, created_at_ms: int) -> Hub:
        groups = {g.lower() for g in consumer_groups} | {DEFAULT_CONSUMER_GROUP.lower()}
        hub = Hub(name, [str(i) for i in range(partitions)], created_at_ms, groups)
        for pid in hub.partition_ids:
            path = None
            if self.persist_dir:
                hub_dir = os.path.join(self.persist_dir, name.lower())
                os.makedirs(hub_dir, exist_ok=True)
                path = os.path.join(hub_dir, f"{pid}.log")
            hub.partitions[pid] = Partition(name, pid, path)
        self.hubs[name.lower()] = hub
        return hub

    def create_hub(self, name: str, partitions: int, consumer_groups=()) -> Hub:
        """Create a hub, or add consumer groups to an existing one of the same partition count."""
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,255}", name) or partitions < 1:
            raise ValueError(f"invalid hub {name!r} with {partitions} partitions")
        existing = self.hubs.get(name.lower())
        if existing is not None:
            if len(existing.partition_ids) != partitions:
                raise ValueError(f"hub {name!r} exists with {len(existing.partition_ids)} partitions")
            existing.consumer_groups |= {g.lower() for g in consumer_groups}
        else:
            self._open_hub(name, partitions, consumer_groups, int(time.time() * 1000))
        if self.persist_dir:
            self._write_catalog()
        return self.hubs[name.lower()]

    def get(self, name: str) -> Hub | None:
        return self.hubs.get(name.lower())

    def close(self) -> None:
        for hub in self.hubs.values():
            for part in hub.partitions.values():
                part.close()
