"""Recognize the event envelope of one JSON object and validate its attributes.

Three shapes reach the hub: Event Grid schema (`eventType`), CloudEvents 1.0
(`specversion`, also seen as `specVersion`) and the Azure Functions Python
re-serialization (`event_type`, no time). Attribute names are matched
case-insensitively because published payloads disagree on case.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

import orjson

from transforms.records import AML_EVENT_TYPES, Envelope, Origin
from transforms.timeparse import InvalidTime, parse_instant_us

_CANONICAL_TYPES = {t.lower(): t for t in AML_EVENT_TYPES}
_AML_TYPES = frozenset(AML_EVENT_TYPES)  # already canonical
_WORKSPACE_ID = re.compile(
    r"^/subscriptions/[^/]+/resourcegroups/[^/]+/providers/"
    r"microsoft\.machinelearningservices/workspaces/([^/]+)/?$",
    re.IGNORECASE,
)
EVENTGRID_KEYS = frozenset(
    {"id", "topic", "subject", "eventType", "eventTime", "data", "dataVersion", "metadataVersion"}
)
_EVENTGRID_NAMES = ("eventType", "topic", "eventTime", "dataVersion")
CLOUDEVENTS_KEYS = frozenset(
    {"specversion", "id", "source", "type", "subject", "time", "data", "data_base64",
     "datacontenttype", "dataschema"}
)
# Keys that only an AML `data` object has: a body made of just those is a data
# object whose envelope was stripped by the producer.
_DATA_ONLY_MARKERS = frozenset(
    {"runid", "runstatus", "experimentid", "modelname", "servicename", "datadriftid"}
)


class EnvelopeError(Exception):
    """The object cannot be an event; `reason` is a dead-letter reason code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def canonical_event_type(event_type: str) -> str:
    return _CANONICAL_TYPES.get(event_type.lower(), event_type)


def canonical_workspace(resource_id: str) -> tuple[str, str | None]:
    """(lower-cased ARM id without trailing slash, workspace name or None)."""
    match = _WORKSPACE_ID.match(resource_id)
    name = match.group(1) if match else None
    return resource_id.rstrip("/").lower(), name


def _text(top: dict[str, Any], key: str, label: str, required: bool) -> str | None:
    value = top.get(key)
    if value is None:
        if required:
            raise EnvelopeError("missing_field", f"required attribute {label!r} is missing")
        return None
    if not isinstance(value, str):
        raise EnvelopeError(
            "wrong_type", f"attribute {label!r} must be a string, got {type(value).__name__}"
        )
    if required and not value.strip():
        raise EnvelopeError("missing_field", f"required attribute {label!r} is empty")
    return value


def data_object(top: dict[str, Any], quirks: list[str]) -> dict[str, Any]:
    data = top.get("data")
    if data is None and top.get("data_base64") is not None:
        try:
            data = orjson.loads(base64.b64decode(top["data_base64"], validate=True))
        except (binascii.Error, TypeError, ValueError, orjson.JSONDecodeError) as exc:
            raise EnvelopeError("wrong_type", f"data_base64 is not base64 JSON: {exc}") from None
        quirks.append("data_base64")
    elif isinstance(data, str):
        # Some relays double-encode: `data` is a JSON document inside a string.
        try:
            data = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise EnvelopeError("wrong_type", "data is a string that is not JSON") from None
        quirks.append("data_json_string")
    if data is None:
        raise EnvelopeError("missing_field", "required attribute 'data' is missing")
    if not isinstance(data, dict):
        raise EnvelopeError("wrong_type", f"data must be an object, got {type(data).__name__}")
    return data


def _recover_duplicate_source(body: bytes, index: int | None) -> list[str]:
    """All `source` values of the element, in document order.

    orjson keeps only the last of duplicate keys; one published CloudEvent
    carries the workspace id first and the subject as a second `source`.
    Re-parsing is slow, so it only happens when `source` is not a workspace id.
    """
    try:
        doc = json.loads(body, object_pairs_hook=lambda pairs: pairs)
    except ValueError:
        return []
    if index is not None:
        if not isinstance(doc, list) or index >= len(doc):
            return []
        doc = doc[index]
    if not isinstance(doc, list):
        return []
    return [v for k, v in doc if k == "source" and isinstance(v, str)]


def read_envelope(
    obj: dict[str, Any], body: bytes, index: int | None, origin: Origin
) -> tuple[Envelope, dict[str, Any]]:
    """Validate the envelope attributes; return them with the raw `data` object."""
    quirks: list[str] = []
    if "eventType" in obj and obj.keys() <= EVENTGRID_KEYS:
        # Canonical Event Grid spelling (almost every delivery): no lower-cased copy needed.
        top, schema, (type_key, ws_key, time_key, version_key) = obj, "eventgrid", _EVENTGRID_NAMES
    else:
        # Canonical CloudEvents keys are already lower-case: the copy would equal the object.
        top = obj if obj.keys() <= CLOUDEVENTS_KEYS else {k.lower(): v for k, v in obj.items()}
        version_key = "dataversion"
        if "specversion" in top:
            schema, type_key, ws_key, time_key = "cloudevents", "type", "source", "time"
            if "specVersion" in obj:
                quirks.append("specVersion")
        elif "eventtype" in top:
            schema, type_key, ws_key, time_key = "eventgrid", "eventtype", "topic", "eventtime"
        elif "event_type" in top:
            schema, type_key, ws_key, time_key = "functions", "event_type", "topic", "event_time"
        elif _DATA_ONLY_MARKERS & top.keys():
            raise EnvelopeError(
                "bare_data_object",
                "an AML data object without its event envelope (no id, type or time); "
                "route the full Event Grid event, not event.get_json()",
            )
        else:
            raise EnvelopeError(
                "not_an_event", "object has none of 'specversion', 'eventType', 'event_type'"
            )

    # Inline checks for the valid case (one per attribute per event); _text decides,
    # and words the error, for everything else.
    event_id = top.get("id")
    if event_id.__class__ is not str or not event_id.strip():
        event_id = _text(top, "id", "id", required=True)
    event_type = top.get(type_key)
    if event_type.__class__ is not str or not event_type.strip():
        event_type = _text(top, type_key, type_key, required=True)
    if event_type not in _AML_TYPES:
        event_type = canonical_event_type(event_type)
    subject = top.get("subject")
    if subject is not None and subject.__class__ is not str:
        subject = _text(top, "subject", "subject", required=False)
    resource = top.get(ws_key)
    if resource is not None and resource.__class__ is not str:
        resource = _text(top, ws_key, ws_key, required=False)
    workspace = workspace_name = None
    if resource is not None:
        workspace, workspace_name = canonical_workspace(resource)
        if workspace_name is None and schema == "cloudevents":
            for value in _recover_duplicate_source(body, index):
                ws, name = canonical_workspace(value)
                if name is not None:
                    workspace, workspace_name = ws, name
                    quirks.append("duplicate_source")
                elif subject is None and value == resource:
                    subject = value
    raw_time = top.get(time_key)
    if raw_time is not None:
        try:
            event_time_us = parse_instant_us(raw_time)
        except InvalidTime as exc:
            raise EnvelopeError("invalid_time", f"{time_key}: {exc}") from None
        time_source = "event"
    elif origin.enqueued_us is not None:
        event_time_us, time_source = origin.enqueued_us, "enqueued"
        quirks.append("time_from_enqueued")
    else:
        raise EnvelopeError(
            "missing_time", "the event has no time and the message has no enqueued time"
        )
    data_version = top.get(version_key)
    # positional: a third of the cost of keywords, once per event (fields in Envelope's order)
    envelope = Envelope(
        schema, event_id, event_type, workspace, workspace_name, subject, event_time_us,
        time_source, None if data_version is None else str(data_version), quirks,
    )
    return envelope, top
