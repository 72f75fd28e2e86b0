"""Backfill's fast path: lines of a file -> table rows, for the shapes almost every line has.

The general decoder (transforms.decode) handles every shape a body can take, and
pays for it with an Envelope, an AmlEvent and an Origin per event. A backfill
spends most of its time on lines of two shapes: an Event Grid or CloudEvents
event (alone or in a JSON array) whose attribute and data keys are spelled
canonically, from an accepted workspace. This module decodes those straight into
row tuples, with the same row builder (rows.fact_rows) as the general path, and
hands every other line, whole, to the general path. Data objects are checked by
transforms.plain, which recognizes the ones the pydantic models would take as they
are (~0.5 us/event cheaper than running the model); for any other, the model runs.

Run event lines go first to the native scanner (transforms/_linescan.c: ~2.5 us a line
less than orjson plus these checks), which reads a run event's values straight from the
bytes and refuses anything outside a narrow, canonical grammar; whatever it refuses
comes here. Without the compiled module (no C compiler at install) this module does it
all, with the same rows.

So the fast path decides only *whether* it may take a line; whenever a check
fails, it gives the line back untouched, and the general decoder's answer (event,
dead letter or ignored row, with its wording) is the answer. A differential
property test (tests/transforms/test_fastpath_lines.py) holds the two paths to
identical rows for arbitrary and mutated lines.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import orjson
from pydantic import ValidationError

from transforms.decode import DATA_SPECS, DecodeRules, canonical_data_keys, decode_body
from transforms.envelope import CLOUDEVENTS_KEYS, EVENTGRID_KEYS, canonical_workspace
from transforms.plain import PLAIN_DATA
from transforms.records import RUN_COMPLETED, RUN_STATUS_CHANGED, Origin, key_hasher
from transforms.rows import TableRows, fact_rows, raw_row, run_row
from transforms.timeparse import InvalidTime, parse_instant_us, utc_day_of

try:
    from transforms._linescan import scan_runs
except ImportError:  # not built (no C compiler at install): the Python fast path does it all
    scan_runs = None

# CloudEvents with only its own lower-case attributes, and `data` itself (data_base64
# is for the general path to decode)
_CLOUDEVENTS_KEYS = CLOUDEVENTS_KEYS - {"data_base64"}


@dataclass
class LineCounts:
    bodies: int = 0
    blank_lines: int = 0
    events: int = 0
    ignored: int = 0
    dead_letters: int = 0
    fast: int = 0  # bodies the fast path took (for tests and profiling)
    native: int = 0  # of those, bodies the native scanner read


class _Lines:
    """Per-call state: the rules, and what the call learns as it goes (workspace ids)."""

    def __init__(self, rules: DecodeRules, file: str, ingested_us: int) -> None:
        # canonical spellings with a data model, as the general path requires
        self.types = DATA_SPECS.keys() & rules.event_types
        self.workspaces = rules.workspaces
        self.file = file
        self.ingested_us = ingested_us
        self.known: dict[str, tuple[str, str | None]] = {}  # resource id -> canonical_workspace
        self.hashers: dict[str, Any] = {}  # workspace -> key hasher that has seen it

    def key(self, workspace: str, event_id: str) -> int:
        """stable_key(workspace, event_id), with the workspace hashed once per call."""
        hasher = self.hashers.get(workspace)
        if hasher is None:
            hasher = self.hashers[workspace] = key_hasher(workspace)
        h = hasher.copy()
        h.update((event_id + "\x1f").encode())
        return int.from_bytes(h.digest(), "big", signed=True)

    def event(self, obj: Any, body: bytes | None, line: int, index: int | None):
        """(facts, raw row) of one canonical event, or None: then the general path decides.
        The payload is `body`, or for an array element (body None) its own JSON."""
        if obj.__class__ is not dict:
            return None
        if "eventType" in obj:
            if not obj.keys() <= EVENTGRID_KEYS:
                return None
            schema, event_type = "eventgrid", obj["eventType"]
            resource, raw_time, version = obj.get("topic"), obj.get("eventTime"), obj.get("dataVersion")
        elif "specversion" in obj and obj.keys() <= _CLOUDEVENTS_KEYS:
            schema, event_type = "cloudevents", obj.get("type")
            resource, raw_time, version = obj.get("source"), obj.get("time"), None
        else:
            return None
        if event_type.__class__ is not str or event_type not in self.types:
            return None
        event_id = obj.get("id")
        if event_id.__class__ is not str or not event_id.strip():
            return None
        subject = obj.get("subject")
        if subject is not None and subject.__class__ is not str:
            return None
        if resource.__class__ is not str:
            return None
        known = self.workspace(resource, schema)
        if known is None:
            return None
        workspace, workspace_name = known
        if raw_time.__class__ is not str:
            return None
        try:
            event_time_us = parse_instant_us(raw_time)
        except InvalidTime:
            return None
        data = obj.get("data")
        if data.__class__ is not dict:
            return None
        spec = DATA_SPECS[event_type]
        if not canonical_data_keys(data, spec):
            return None
        parsed: Any = PLAIN_DATA[event_type](data)
        if parsed is None:
            try:
                parsed = spec.validate(data)
            except ValidationError:
                return None
        if event_type == RUN_STATUS_CHANGED and not parsed.run_status:
            return None
        quirks: list[str] = []
        facts = fact_rows(event_type, parsed, quirks)
        return facts, self.raw(workspace, workspace_name, event_id, event_type, schema, subject,
                               event_time_us, None if version is None else str(version), quirks,
                               orjson.dumps(obj) if body is None else body, line, index)

    def workspace(self, resource: str, schema: str) -> tuple[str, str | None] | None:
        """(workspace, workspace name) of an event's topic or source, or None when the
        general path must decide: outside the filter, or a CloudEvents source that names
        no workspace (maybe a duplicate `source` attribute: the general path looks)."""
        known = self.known.get(resource)
        if known is None:
            known = self.known[resource] = canonical_workspace(resource)
        if known[1] is None and schema == "cloudevents":
            return None
        if self.workspaces and known[0] not in self.workspaces:
            return None
        return known

    def raw(self, workspace: str, workspace_name: str | None, event_id: str, event_type: str,
            schema: str, subject: str | None, event_time_us: int, version: str | None,
            quirks: list[str], payload: Any, line: int, index: int | None) -> tuple:
        """The raw_events row of an event the fast path takes. Build it after the facts:
        they may add a quirk."""
        head = (self.key(workspace, event_id), workspace, workspace_name, event_id)
        tail = ("file", None, None, None, None, None, self.file, line, index, self.ingested_us,
                utc_day_of(event_time_us))
        return raw_row(head, event_type, schema, subject, event_time_us, "event", version,
                       quirks, payload, tail)

    def scanned(self, events: list[tuple], body: Any, line: int) -> list | None:
        """(facts, raw row) of each run event _linescan.scan_runs read from a line, or
        None: then the line goes to the Python paths. The scanner checked what the JSON
        says; this checks what the rules say (event types, workspaces) and the time."""
        prepared = []
        for index, (completed, cloudevents, event_id, resource, subject, raw_time, version,
                    run_id, experiment_id, experiment_name, run_type, run_status, parent,
                    pipeline, compute, step, tags, props, payload) in enumerate(events):
            event_type = RUN_COMPLETED if completed else RUN_STATUS_CHANGED
            schema = "cloudevents" if cloudevents else "eventgrid"
            if event_type not in self.types:
                return None
            known = self.workspace(resource, schema)
            if known is None:
                return None
            try:
                event_time_us = parse_instant_us(raw_time)
            except InvalidTime:
                return None
            quirks: list[str] = []
            facts = [("run_events", run_row(
                event_type, run_id, experiment_id, experiment_name, run_type, run_status, parent,
                pipeline, compute, step, tags, props, quirks))]
            if payload is None:  # the line is this one event
                payload, position = body, None
            else:
                position = index
            prepared.append((facts, self.raw(known[0], known[1], event_id, event_type, schema,
                                             subject, event_time_us, version, quirks, payload,
                                             line, position)))
        return prepared


def decode_lines(bodies: Sequence[bytes | memoryview], file: str, first_line: int,
                 rules: DecodeRules, ingested_us: int, *,
                 fast: bool = True, native: bool = True) -> tuple[TableRows, LineCounts]:
    """Rows of consecutive lines of `file` (the first is line `first_line`). Pure. A line
    may be a memoryview: a fast-path row's payload is then that view.

    Gives exactly the rows that decode_body + TableRows.add give line by line
    (`fast=False` does just that), in the same order.
    """
    scan = scan_runs if fast and native else None
    rows, counts = TableRows(), LineCounts(bodies=len(bodies))
    lines = _Lines(rules, file, ingested_us)
    add = rows.add_event_parts
    for offset, body in enumerate(bodies):
        line = first_line + offset
        prepared = events = None
        if scan is not None:  # a line it takes is JSON, so it is not blank
            events = scan(body)
            if events is not None:
                prepared = lines.scanned(events, body, line)
                counts.native += prepared is not None
        # A line the scanner read but the rules refused (event type, workspace, time) is one
        # the Python fast path refuses for the same reasons: straight to the general path.
        if fast and events is None:
            try:
                doc = orjson.loads(body)
            except orjson.JSONDecodeError:
                doc = None
            if doc.__class__ is dict:
                one = lines.event(doc, body, line, None)
                prepared = None if one is None else [one]
            elif doc.__class__ is list and doc:
                prepared = []
                for index, element in enumerate(doc):
                    one = lines.event(element, None, line, index)
                    if one is None:
                        prepared = None
                        break
                    prepared.append(one)
        if prepared is not None:
            for facts, raw in prepared:
                add(facts, raw)
            counts.events += len(prepared)
            counts.fast += 1
            continue
        body = bytes(body)
        if not body.strip():
            counts.blank_lines += 1
            continue
        result = decode_body(body, Origin("file", None, None, None, None, None, file, line), rules)
        counts.events += len(result.events)
        counts.ignored += len(result.ignored)
        counts.dead_letters += len(result.dead_letters)
        rows.add(result, ingested_us)
    counts.bodies -= counts.blank_lines
    return rows, counts
