"""Value types that flow out of the decoder: events, dead letters, ignored rows."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, NamedTuple

# The five AML system event types, canonical spelling.
RUN_COMPLETED = "Microsoft.MachineLearningServices.RunCompleted"
RUN_STATUS_CHANGED = "Microsoft.MachineLearningServices.RunStatusChanged"
MODEL_REGISTERED = "Microsoft.MachineLearningServices.ModelRegistered"
MODEL_DEPLOYED = "Microsoft.MachineLearningServices.ModelDeployed"
DATASET_DRIFT_DETECTED = "Microsoft.MachineLearningServices.DatasetDriftDetected"
AML_EVENT_TYPES: tuple[str, ...] = (
    RUN_COMPLETED,
    RUN_STATUS_CHANGED,
    MODEL_REGISTERED,
    MODEL_DEPLOYED,
    DATASET_DRIFT_DETECTED,
)


class Origin(NamedTuple):
    """Where a message body came from: an Event Hubs partition or a file line.

    A NamedTuple rather than a frozen dataclass: one is built per message on the
    hot path, and tuple construction is several times cheaper.
    """

    source_kind: str  # "eventhub" | "file"
    hub: str | None = None  # "<namespace>/<eventhub>" for eventhub origins
    partition_id: str | None = None
    offset: str | None = None
    sequence_number: int | None = None
    enqueued_us: int | None = None
    file: str | None = None
    line: int | None = None

    def identity(self) -> bytes:
        """Stable identity of the message body, for keys of rows that have no event id."""
        parts = (
            self.source_kind,
            self.hub or "",
            self.partition_id or "",
            "" if self.sequence_number is None else str(self.sequence_number),
            self.file or "",
            "" if self.line is None else str(self.line),
        )
        return "\x1f".join(parts).encode()


# Only ever copied, never updated: copy() is cheaper than configuring a new hasher.
_BLAKE2B_8 = hashlib.blake2b(digest_size=8)


def key_hasher(*parts: str):
    """A hasher that has seen `parts` as stable_key would: copy it, update it with the
    remaining parts (each followed by 0x1F), and its digest is stable_key's."""
    h = _BLAKE2B_8.copy()
    h.update("".join(part + "\x1f" for part in parts).encode())
    return h


def stable_key(*parts: bytes | str) -> int:
    """A signed 64-bit key (fits Parquet INT64) from the given parts, each followed by 0x1F."""
    h = _BLAKE2B_8.copy()
    try:
        # all text (every event key): one encode and one update for the lot
        h.update(("\x1f".join(parts) + "\x1f").encode())  # type: ignore[arg-type]
    except TypeError:  # some parts are bytes
        for part in parts:
            h.update(part.encode() if isinstance(part, str) else part)
            h.update(b"\x1f")
    return int.from_bytes(h.digest(), "big", signed=True)


@dataclass(slots=True)
class Envelope:
    """The event attributes common to every schema, already validated."""

    schema: str  # "eventgrid" | "cloudevents" | "functions"
    event_id: str
    event_type: str  # canonical spelling when it is an AML type
    workspace: str | None  # lower-cased ARM id, the dedupe scope
    workspace_name: str | None
    subject: str | None
    event_time_us: int
    time_source: str  # "event" | "enqueued"
    data_version: str | None
    quirks: list[str] = field(default_factory=list)

    @property
    def key(self) -> int:
        return stable_key(self.workspace or "", self.event_id)


@dataclass(slots=True)
class AmlEvent:
    envelope: Envelope
    data: Any  # one of transforms.models' data classes
    payload: bytes  # the event's own JSON
    origin: Origin
    index: int | None  # position inside a JSON array body, None for a single object
    late: bool = False


@dataclass(slots=True)
class DeadLetter:
    reason: str  # machine-readable, see transforms.decode.REASONS
    error: str  # human-readable detail
    payload: bytes
    origin: Origin
    index: int | None = None

    @property
    def key(self) -> int:
        return stable_key(self.origin.identity(), str(self.index), self.reason)


@dataclass(slots=True)
class Ignored:
    """A well-formed message the filter keeps out of the tables, kept as a row."""

    reason: str  # "foreign_workspace" | "unknown_event_type" | "diagnostic_records"
    detail: str
    origin: Origin
    index: int | None = None
    event_id: str | None = None
    event_type: str | None = None
    workspace: str | None = None
    subject: str | None = None
    event_time_us: int | None = None

    @property
    def key(self) -> int:
        if self.event_id is not None:  # the same event seen again is the same row
            return stable_key(self.workspace or "", self.event_id)
        return stable_key(self.origin.identity(), str(self.index), self.reason)


@dataclass(slots=True)
class DecodeResult:
    events: list[AmlEvent] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    ignored: list[Ignored] = field(default_factory=list)
