"""One message body (bytes + where it came from) -> events, dead letters, ignored rows.

Never raises for bad input: every body ends as events, dead letters or ignored
rows, each carrying its coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import orjson
from pydantic import BaseModel, ValidationError

from transforms.envelope import (
    EnvelopeError,
    canonical_event_type,
    canonical_workspace,
    data_object,
    read_envelope,
)
from transforms.models import (
    DriftData,
    ModelDeployedData,
    ModelRegisteredData,
    RunData,
    wire_keys,
)
from transforms.records import (
    AML_EVENT_TYPES,
    DATASET_DRIFT_DETECTED,
    MODEL_DEPLOYED,
    MODEL_REGISTERED,
    RUN_COMPLETED,
    RUN_STATUS_CHANGED,
    AmlEvent,
    DeadLetter,
    DecodeResult,
    Ignored,
    Origin,
)

# Dead-letter reasons, for docs/decoding.md and for operators filtering dead_letters.
DEAD_LETTER_REASONS: dict[str, str] = {
    "empty_body": "the message body is empty",
    "invalid_json": "the body is not UTF-8 JSON",
    "not_an_event": "JSON that is not an event object or an array of event objects",
    "bare_data_object": "an AML data object without its event envelope",
    "missing_field": "a required attribute or data field is missing or empty",
    "wrong_type": "an attribute or data field has the wrong JSON type",
    "missing_time": "no event time and no enqueued time to fall back to",
    "invalid_time": "a time that is not ISO 8601",
}
IGNORE_REASONS: dict[str, str] = {
    "foreign_workspace": "the event's workspace is not in [filter] workspaces",
    "unknown_event_type": "the event type is not in [filter] event_types",
    "diagnostic_records": "an Azure Monitor diagnostic-logs document, not an AML event",
}

_DATA_MODELS: dict[str, type[BaseModel]] = {
    RUN_COMPLETED: RunData,
    RUN_STATUS_CHANGED: RunData,
    MODEL_REGISTERED: ModelRegisteredData,
    MODEL_DEPLOYED: ModelDeployedData,
    DATASET_DRIFT_DETECTED: DriftData,
}


@dataclass(frozen=True, slots=True)
class _DataSpec:
    """How to validate one event type's data: the model's own validator (the authority
    on both paths; model_validate adds only a Python-level call around it) and the key
    spellings that decide whether the data may skip the lower-cased copy."""

    validate: Callable[[Any], BaseModel]
    wire: frozenset[str]  # exact camelCase keys the model reads
    lowered: frozenset[str]  # the same keys lower-cased


DATA_SPECS: dict[str, _DataSpec] = {
    event_type: _DataSpec(
        model.__pydantic_validator__.validate_python,
        wire_keys(model),
        frozenset(k.lower() for k in wire_keys(model)),
    )
    for event_type, model in _DATA_MODELS.items()
}


@dataclass(frozen=True, slots=True)
class DecodeRules:
    """What to accept. `workspaces` holds lower-cased ARM ids; empty means all."""

    workspaces: frozenset[str] = frozenset()
    event_types: frozenset[str] = field(default_factory=lambda: frozenset(AML_EVENT_TYPES))

    @classmethod
    def build(cls, workspaces: list[str], event_types: list[str]) -> DecodeRules:
        return cls(
            workspaces=frozenset(canonical_workspace(w)[0] for w in workspaces),
            event_types=frozenset(canonical_event_type(t) for t in event_types),
        )


def _lower_keys(data: dict[str, Any]) -> dict[str, Any]:
    lowered = {k.lower(): v for k, v in data.items()}
    if len(lowered) == len(data):
        return lowered
    # Two spellings of one key (e.g. runTags and RunTags): the first non-null wins.
    merged: dict[str, Any] = {}
    for k, v in data.items():
        lk = k.lower()
        if merged.get(lk) is None:
            merged[lk] = v
    return merged


def canonical_data_keys(data: dict[str, Any], spec: _DataSpec) -> bool:
    """True when validating `data` as it is reads exactly what validating its
    lower-cased copy would: every key the model knows is in its camelCase spelling,
    so lower-casing would neither rename a known key nor merge two spellings of one."""
    if data.keys() <= spec.wire:
        return True
    for key in data:
        if key not in spec.wire and key.lower() in spec.lowered:
            return False
    return True


def _validate_data(data: dict[str, Any], spec: _DataSpec) -> BaseModel:
    """The validated data model. Raises ValidationError, always from the general path,
    so dead-letter reasons and texts (which name lower-cased keys) never depend on
    which path ran."""
    if canonical_data_keys(data, spec):
        try:
            return spec.validate(data)
        except ValidationError:
            pass  # re-validated below for the error text
    return spec.validate(_lower_keys(data))


def _validation_dead_letter(exc: ValidationError) -> tuple[str, str]:
    errors = exc.errors(include_url=False, include_input=False)
    first = errors[0]
    where = "data." + ".".join(str(p) for p in first["loc"])
    kind = first["type"]
    if kind == "missing":
        reason = "missing_field"
    elif kind == "invalid_time":
        reason = "invalid_time"
    elif kind == "string_too_short":
        reason = "missing_field"
    else:
        reason = "wrong_type"
    detail = "; ".join(
        f"data.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors[:5]
    )
    return reason, f"{where}: {detail}" if len(errors) == 1 else detail


def _payload(obj: Any, body: bytes, index: int | None) -> bytes:
    if index is None:
        return body
    # an exact-size copy: orjson's result keeps a ~4 KB allocation, and the worker
    # holds payloads in its reorder buffer
    return bytes(memoryview(orjson.dumps(obj)))


def _ignored(reason: str, detail: str, origin: Origin, index: int | None, envelope) -> Ignored:
    return Ignored(reason, detail, origin, index, envelope.event_id, envelope.event_type,
                   envelope.workspace, envelope.subject, envelope.event_time_us)


# Module-level helpers rather than closures: _decode_object runs once per event, and
# defining two closures on every call is pure overhead.
def _decode_object(
    obj: Any, body: bytes, index: int | None, origin: Origin, rules: DecodeRules,
    out: DecodeResult,
) -> None:
    if not isinstance(obj, dict):
        where = "the body" if index is None else f"array element {index}"
        out.dead_letters.append(
            DeadLetter("not_an_event", f"{where} is a JSON {type(obj).__name__}, not an object",
                       _payload(obj, body, index), origin, index)
        )
        return
    if isinstance(obj.get("records"), list):
        out.ignored.append(
            Ignored("diagnostic_records", f"{len(obj['records'])} diagnostic log records",
                    origin, index)
        )
        return
    try:
        envelope, top = read_envelope(obj, body, index, origin)
    except EnvelopeError as exc:
        out.dead_letters.append(
            DeadLetter(exc.reason, str(exc), _payload(obj, body, index), origin, index))
        return
    # a type without a data model cannot be stored, whatever the rules say (the config
    # refuses such types; DecodeRules built by hand might not)
    if envelope.event_type not in rules.event_types or envelope.event_type not in DATA_SPECS:
        out.ignored.append(_ignored(
            "unknown_event_type", f"event type {envelope.event_type!r} is not accepted",
            origin, index, envelope))
        return
    if rules.workspaces and envelope.workspace not in rules.workspaces:
        out.ignored.append(_ignored(
            "foreign_workspace", f"workspace {envelope.workspace!r} is not accepted",
            origin, index, envelope))
        return
    try:
        parsed = _validate_data(data_object(top, envelope.quirks), DATA_SPECS[envelope.event_type])
    except EnvelopeError as exc:
        out.dead_letters.append(
            DeadLetter(exc.reason, str(exc), _payload(obj, body, index), origin, index))
        return
    except ValidationError as exc:
        reason, detail = _validation_dead_letter(exc)
        out.dead_letters.append(
            DeadLetter(reason, detail, _payload(obj, body, index), origin, index))
        return
    if envelope.event_type == RUN_STATUS_CHANGED and not parsed.run_status:
        out.dead_letters.append(
            DeadLetter("missing_field", "data.runStatus: a RunStatusChanged event needs it",
                       _payload(obj, body, index), origin, index)
        )
        return
    out.events.append(AmlEvent(envelope, parsed, _payload(obj, body, index), origin, index))


def decode_body(body: bytes, origin: Origin, rules: DecodeRules) -> DecodeResult:
    """Decode one message body. Pure: the result depends only on the arguments."""
    out = DecodeResult()
    if not body or body.isspace():
        out.dead_letters.append(DeadLetter("empty_body", "the message body is empty", body, origin))
        return out
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        out.dead_letters.append(DeadLetter("invalid_json", str(exc), body, origin))
        return out
    if isinstance(doc, list):
        if not doc:
            out.dead_letters.append(
                DeadLetter("not_an_event", "an empty JSON array holds no events", body, origin)
            )
        for i, element in enumerate(doc):
            _decode_object(element, body, i, origin, rules, out)
    else:
        _decode_object(doc, body, None, origin, rules, out)
    return out
