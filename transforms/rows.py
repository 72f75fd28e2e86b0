"""Decoded events -> rows of the warehouse tables (pure; `ingested_us` is injected).

Rows are tuples in the column order of `ROW_COLUMNS`; the writer turns them
into Arrow columns typed by the DDL in sql/tables/*.sql (a unit test keeps the
two in step). A raw_events, dead_letters or ignored_events row holds every column
of its table (`TABLE_COLUMNS`): it starts with `dedupe_key` and ends with the
coordinates of the message it came from and its `event_date` partition. A fact
row (EVENT_TABLES) holds only its own columns: the ones its table shares with
raw_events (`SHARED_COLUMNS`: key, ids, times, coordinates) are its event's
raw_events row's, which TableRows.owners points at, so the writer takes them from
there instead of converting the same values twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

import orjson

from transforms.models import DriftData, ModelDeployedData, ModelRegisteredData, RunData, parse_model_ids
from transforms.plain import PlainDrift, PlainModelDeployed, PlainModelRegistered, PlainRun
from transforms.records import RUN_COMPLETED, AmlEvent, DecodeResult, Origin
from transforms.status import STATUS_RANK, run_event_status
from transforms.timeparse import utc_day_of

COORD_COLUMNS = (
    "source_kind", "hub", "partition_id", "partition_offset", "sequence_number",
    "enqueued_at", "source_file", "source_line", "batch_index", "ingested_at",
)
_EVENT_HEAD = ("dedupe_key", "workspace", "workspace_name", "event_id")
TABLE_COLUMNS: dict[str, tuple[str, ...]] = {
    "raw_events": _EVENT_HEAD + (
        "event_type", "schema_kind", "subject", "event_time", "time_source", "data_version",
        "quirks", "late", "payload",
    ),
    "run_events": _EVENT_HEAD + (
        "event_type", "subject", "event_time", "run_id", "experiment_id", "experiment_name",
        "run_type", "status", "status_raw", "status_rank", "parent_run_id",
        "published_pipeline_id", "compute_target_type", "step_type", "run_tags",
        "run_properties",
    ),
    "model_registrations": _EVENT_HEAD + (
        "subject", "event_time", "model_name", "model_version", "model_tags", "model_properties",
    ),
    "model_deployments": _EVENT_HEAD + (
        "subject", "event_time", "service_name", "compute_type", "model_ordinal", "model_name",
        "model_version", "model_ids", "service_tags", "service_properties",
    ),
    "drift_detections": _EVENT_HEAD + (
        "subject", "event_time", "monitor_id", "monitor_name", "run_id", "base_dataset_id",
        "target_dataset_id", "coefficient", "window_start", "window_end",
    ),
    "dead_letters": ("dedupe_key", "reason", "error", "payload", "payload_text"),
    "ignored_events": (
        "dedupe_key", "reason", "detail", "event_id", "event_type", "workspace", "subject",
        "event_time",
    ),
}
TABLE_COLUMNS = {name: cols + COORD_COLUMNS + ("event_date",) for name, cols in TABLE_COLUMNS.items()}
EVENT_TABLES = ("run_events", "model_registrations", "model_deployments", "drift_detections")
SHARED_COLUMNS: dict[str, tuple[str, ...]] = {
    name: tuple(c for c in TABLE_COLUMNS[name] if c in TABLE_COLUMNS["raw_events"])
    for name in EVENT_TABLES
}
ROW_COLUMNS: dict[str, tuple[str, ...]] = {
    name: tuple(c for c in cols if c not in SHARED_COLUMNS.get(name, ()))
    for name, cols in TABLE_COLUMNS.items()
}


def _json(value: dict[str, Any]) -> str:
    # str, not orjson's bytes: those keep a ~4 KB allocation each, which matters when the
    # worker's reorder buffer holds tens of thousands of rows
    if not value:
        return "{}"  # most tag maps: what orjson would write, without the round trip
    return orjson.dumps(value).decode()


def _first(key: str, first: dict[str, Any], second: dict[str, Any]) -> str | None:
    value = first.get(key)
    if value is None:
        value = second.get(key)
        if value is None:
            return None
    return value if isinstance(value, str) else str(value)


def _coords(origin: Origin, index: int | None, ingested_us: int) -> tuple:
    return (
        origin.source_kind, origin.hub, origin.partition_id, origin.offset,
        origin.sequence_number, origin.enqueued_us, origin.file, origin.line, index, ingested_us,
    )


class TableRows:
    """Rows per table for one batch of decoded bodies."""

    def __init__(self) -> None:
        self.rows: dict[str, list[tuple]] = {name: [] for name in TABLE_COLUMNS}
        # owners[table][i] = index in rows["raw_events"] of the event that fact row i
        # came from: the writer keeps a fact row exactly when it keeps that raw row.
        self.owners: dict[str, list[int]] = {name: [] for name in EVENT_TABLES}
        self.bodies = 0

    def __len__(self) -> int:
        return sum(len(r) for r in self.rows.values())

    def add(self, result: DecodeResult, ingested_us: int) -> None:
        self.bodies += 1
        for event in result.events:
            self.add_event_rows(event_rows(event, ingested_us), event.late)
        for dead in result.dead_letters:
            date = utc_day_of(dead.origin.enqueued_us or ingested_us)
            try:
                text = dead.payload.decode()
            except UnicodeDecodeError:
                text = None
            self.rows["dead_letters"].append(
                (dead.key, dead.reason, dead.error, dead.payload, text)
                + _coords(dead.origin, dead.index, ingested_us) + (date,)
            )
        for ign in result.ignored:
            when = ign.event_time_us or ign.origin.enqueued_us or ingested_us
            self.rows["ignored_events"].append(
                (ign.key, ign.reason, ign.detail, ign.event_id, ign.event_type, ign.workspace,
                 ign.subject, ign.event_time_us)
                + _coords(ign.origin, ign.index, ingested_us) + (utc_day_of(when),)
            )

    def add_event(self, event: AmlEvent, ingested_us: int) -> None:
        self.add_event_rows(event_rows(event, ingested_us), event.late)

    def add_event_rows(self, prepared: EventRows, late: bool) -> None:
        raw = prepared.raw
        if late:
            raw = raw[:_LATE] + (True,) + raw[_LATE + 1:]
        self.add_event_parts(prepared.facts, raw)

    def add_event_parts(self, facts: list[tuple[str, tuple]], raw: tuple) -> None:
        """One event's fact rows and its raw_events row, fact rows pointing at it."""
        rows, owners = self.rows, self.owners
        raw_rows = rows["raw_events"]
        owner = len(raw_rows)
        for table, row in facts:
            rows[table].append(row)
            owners[table].append(owner)
        raw_rows.append(raw)


def raw_row(head: tuple, event_type: str, schema: str, subject: str | None, event_time_us: int,
            time_source: str, data_version: str | None, quirks: list[str], payload: bytes,
            tail: tuple) -> tuple:
    """The raw_events row of one event (late=False): the one definition of its layout,
    shared like fact_rows. Build it after the facts: they may add a quirk."""
    return head + (event_type, schema, subject, event_time_us, time_source, data_version,
                   ",".join(quirks) or None, False, payload) + tail


def fact_rows(event_type: str, data: Any, quirks: list[str]) -> list[tuple[str, tuple]]:
    """(table, row) of the fact rows of one validated event, each row its table's own
    columns (ROW_COLUMNS): the one definition of their layout, shared by the general
    decoder (event_rows) and the backfill's fast path. `data` is a validated model or
    its plain twin (transforms.plain): same attributes. Appends to `quirks` what the
    data reveals about the event."""
    if isinstance(data, (RunData, PlainRun)):
        tags, props = data.run_tags, data.run_properties
        return [("run_events", run_row(
            event_type, data.run_id, data.experiment_id, data.experiment_name, data.run_type,
            data.run_status,
            _first("azureml.pipelinerunid", tags, props),
            _first("azureml.pipelineid", props, tags),
            _first("computeTargetType", props, tags),
            _first("stepType", props, tags),
            _json(tags), _json(props), quirks,
        ))]
    if isinstance(data, (ModelRegisteredData, PlainModelRegistered)):
        return [("model_registrations", (
            data.model_name, data.model_version, _json(data.model_tags),
            _json(data.model_properties)))]
    if isinstance(data, (ModelDeployedData, PlainModelDeployed)):
        models: Iterable[tuple[str | None, str | None]] = parse_model_ids(data.model_ids) or [
            (None, None)  # a deployment without model ids still shows as one row
        ]
        tags_text, props_text = _json(data.service_tags), _json(data.service_properties)
        return [("model_deployments", (
            data.service_name, data.service_compute_type, ordinal, name, version,
            data.model_ids, tags_text, props_text))
            for ordinal, (name, version) in enumerate(models)]
    if isinstance(data, (DriftData, PlainDrift)):
        return [("drift_detections", (
            data.data_drift_id, data.data_drift_name, data.run_id, data.base_dataset_id,
            data.target_dataset_id, data.drift_coefficient, data.start_time, data.end_time))]
    return []


def run_row(event_type: str, run_id: str, experiment_id: str | None,
            experiment_name: str | None, run_type: str | None, run_status: str | None,
            parent_run_id: str | None, published_pipeline_id: str | None,
            compute_target_type: str | None, step_type: str | None, tags_json: str,
            properties_json: str, quirks: list[str]) -> tuple:
    """A run_events row (its own columns) from a run event's values, the tags it reads
    already looked up and its tag maps already JSON text: the one definition of its
    layout, for fact_rows and for the backfill's native line scanner
    (transforms.fastpath), which reads those straight from the line's bytes."""
    status = run_event_status(run_status)
    if event_type == RUN_COMPLETED and status != "Completed":
        quirks.append("run_completed_with_status")
    return (run_id, experiment_id, experiment_name, run_type, status, run_status,
            STATUS_RANK[status], parent_run_id, published_pipeline_id, compute_target_type,
            step_type, tags_json, properties_json)


@dataclass(slots=True)
class EventRows:
    """One event's rows, normalized but not yet placed in a batch: compact enough for
    the worker's reorder buffer to hold instead of the parsed event (~3x smaller)."""

    facts: list[tuple[str, tuple]]
    raw: tuple  # raw_events row with late=False


_LATE = TABLE_COLUMNS["raw_events"].index("late")


def event_rows(event: AmlEvent, ingested_us: int) -> EventRows:
    env, data = event.envelope, event.data
    head = (env.key, env.workspace, env.workspace_name, env.event_id)
    origin = event.origin
    tail = (  # _coords and the partition day in one tuple: this runs once per event
        origin.source_kind, origin.hub, origin.partition_id, origin.offset,
        origin.sequence_number, origin.enqueued_us, origin.file, origin.line, event.index,
        ingested_us, utc_day_of(env.event_time_us),
    )
    facts = fact_rows(env.event_type, data, env.quirks)
    raw = raw_row(head, env.event_type, env.schema, env.subject, env.event_time_us,
                  env.time_source, env.data_version, env.quirks, event.payload, tail)
    return EventRows(facts, raw)
