"""Data objects the models would accept exactly as they are, recognized without pydantic.

Validating a RunData with pydantic costs ~2 us, more than the rest of an event's
fast-path checks together, and almost every data object on the wire is plain: each
field the model reads is a JSON string (or null where the model allows it), each
tag map an object or null. For such an object the model's answer is known without
running it: the same values, tag maps as they are, an int modelVersion as its
text. These checks recognize exactly that case and nothing more; any other value
(a number where text belongs, an empty id, a time that does not parse) returns
None and the pydantic model decides, as it always does on the general path. A
property test holds every answer here to the model's (tests/transforms/test_plain_data.py).

Callers must first know that `data`'s keys are canonical (decode.canonical_data_keys):
these read the camelCase spellings only. The tuples carry the models' attribute
names, so rows.fact_rows reads either.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

from transforms.records import (
    DATASET_DRIFT_DETECTED,
    MODEL_DEPLOYED,
    MODEL_REGISTERED,
    RUN_COMPLETED,
    RUN_STATUS_CHANGED,
)
from transforms.timeparse import InvalidTime, parse_instant_us


class PlainRun(NamedTuple):
    run_id: str
    experiment_id: str | None
    experiment_name: str | None
    run_type: str | None
    run_status: str | None
    run_tags: dict[str, Any]
    run_properties: dict[str, Any]


class PlainModelRegistered(NamedTuple):
    model_name: str
    model_version: str
    model_tags: dict[str, Any]
    model_properties: dict[str, Any]


class PlainModelDeployed(NamedTuple):
    service_name: str
    service_compute_type: str | None
    model_ids: str | None
    service_tags: dict[str, Any]
    service_properties: dict[str, Any]


class PlainDrift(NamedTuple):
    data_drift_id: str
    data_drift_name: str | None
    run_id: str | None
    base_dataset_id: str | None
    target_dataset_id: str | None
    drift_coefficient: float | None
    start_time: int | None
    end_time: int | None


# Class checks, not isinstance: JSON gives exact types, and `x.__class__ is str` (or
# membership of the class in a set) is the cheapest test; spelled out field by field
# for the run events, which are most events.
_TEXT = frozenset({str, type(None)})  # a `str | None` field
_TAGS = frozenset({dict, type(None)})  # a tag map; null is no tags (the models' BeforeValidator)


def _id(value: Any) -> bool:
    return value.__class__ is str and value != ""  # required, min_length=1


def plain_run(data: dict[str, Any]) -> PlainRun | None:
    g = data.get
    run_id, tags, props = g("runId"), g("runTags"), g("runProperties")
    exp_id, exp_name, run_type, status = (
        g("experimentId"), g("experimentName"), g("runType"), g("runStatus"))
    if not (run_id.__class__ is str and run_id and exp_id.__class__ in _TEXT
            and exp_name.__class__ in _TEXT and run_type.__class__ in _TEXT
            and status.__class__ in _TEXT and tags.__class__ in _TAGS
            and props.__class__ in _TAGS):
        return None
    return PlainRun(run_id, exp_id, exp_name, run_type, status,
                    {} if tags is None else tags, {} if props is None else props)


def plain_model_registered(data: dict[str, Any]) -> PlainModelRegistered | None:
    g = data.get
    name: Any = g("modelName")
    version, tags, props = g("modelVersion"), g("modelTags"), g("modelProperties")
    if version.__class__ is int:  # an int on early payloads (a bool's class is bool)
        version = str(version)
    if not (_id(name) and version.__class__ is str and tags.__class__ in _TAGS
            and props.__class__ in _TAGS):
        return None
    return PlainModelRegistered(name, version, {} if tags is None else tags,
                                {} if props is None else props)


def plain_model_deployed(data: dict[str, Any]) -> PlainModelDeployed | None:
    g = data.get
    name: Any = g("serviceName")
    tags, props = g("serviceTags"), g("serviceProperties")
    compute_type, model_ids = g("serviceComputeType"), g("modelIds")
    if not (_id(name) and compute_type.__class__ in _TEXT and model_ids.__class__ in _TEXT
            and tags.__class__ in _TAGS and props.__class__ in _TAGS):
        return None
    return PlainModelDeployed(name, compute_type, model_ids, {} if tags is None else tags,
                              {} if props is None else props)


def _instant(value: Any) -> int | None | bool:
    """The instant, None for null, False when the model must decide."""
    if value is None:
        return None
    if value.__class__ is not str:
        return False
    try:
        return parse_instant_us(value)
    except InvalidTime:
        return False


def plain_drift(data: dict[str, Any]) -> PlainDrift | None:
    g = data.get
    drift_id: Any = g("dataDriftId")
    coefficient = g("driftCoefficient")
    fields = (g("dataDriftName"), g("runId"), g("baseDatasetId"), g("targetDatasetId"))
    if coefficient.__class__ is int:
        coefficient = float(coefficient)  # as the model's BeforeValidator does
    if not (_id(drift_id) and all(f.__class__ in _TEXT for f in fields)
            and (coefficient is None or coefficient.__class__ is float)):
        return None
    start, end = _instant(g("startTime")), _instant(g("endTime"))
    if start is False or end is False:
        return None
    return PlainDrift(drift_id, *fields, coefficient, start, end)


PLAIN_DATA: dict[str, Callable[[dict[str, Any]], Any]] = {
    RUN_COMPLETED: plain_run,
    RUN_STATUS_CHANGED: plain_run,
    MODEL_REGISTERED: plain_model_registered,
    MODEL_DEPLOYED: plain_model_deployed,
    DATASET_DRIFT_DETECTED: plain_drift,
}
