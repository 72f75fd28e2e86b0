"""Pydantic models of the `data` object of each AML event type.

Keys arrive in camelCase (the wire), PascalCase (docs, historical payloads) or
both in one object, so the decoder lower-cases keys before validation and the
models use lower-case aliases. Unknown keys (e.g. `createdBy`,
`tarAsSystemEventDatasetId`) are ignored.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError

from transforms.timeparse import InvalidTime, parse_instant_us


def _version_text(value: Any) -> Any:
    # modelVersion is an int in docs and early payloads, a string on today's wire.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


def _none_as_empty(value: Any) -> Any:
    return {} if value is None else value


def _instant_or_none(value: Any) -> int | None:
    if value is None:
        return None
    try:
        return parse_instant_us(value)
    except InvalidTime as exc:
        raise PydanticCustomError("invalid_time", str(exc)) from None


def _coefficient(value: Any) -> Any:
    if isinstance(value, bool):
        return value  # let strict float validation reject it
    if isinstance(value, int):
        return float(value)
    return value


Tags = Annotated[dict[str, Any], BeforeValidator(_none_as_empty)]
Instant = Annotated[int | None, BeforeValidator(_instant_or_none)]
_STRICT = ConfigDict(extra="ignore", strict=True, frozen=True, populate_by_name=False)


class RunData(BaseModel):
    model_config = _STRICT

    run_id: str = Field(alias="runid", min_length=1)
    experiment_id: str | None = Field(default=None, alias="experimentid")
    experiment_name: str | None = Field(default=None, alias="experimentname")
    run_type: str | None = Field(default=None, alias="runtype")
    run_status: str | None = Field(default=None, alias="runstatus")
    run_tags: Tags = Field(default_factory=dict, alias="runtags")
    run_properties: Tags = Field(default_factory=dict, alias="runproperties")


class ModelRegisteredData(BaseModel):
    model_config = _STRICT

    model_name: str = Field(alias="modelname", min_length=1)
    model_version: Annotated[str, BeforeValidator(_version_text)] = Field(alias="modelversion")
    model_tags: Tags = Field(default_factory=dict, alias="modeltags")
    model_properties: Tags = Field(default_factory=dict, alias="modelproperties")


class ModelDeployedData(BaseModel):
    model_config = _STRICT

    service_name: str = Field(alias="servicename", min_length=1)
    service_compute_type: str | None = Field(default=None, alias="servicecomputetype")
    model_ids: str | None = Field(default=None, alias="modelids")
    service_tags: Tags = Field(default_factory=dict, alias="servicetags")
    service_properties: Tags = Field(default_factory=dict, alias="serviceproperties")


class DriftData(BaseModel):
    model_config = _STRICT

    data_drift_id: str = Field(alias="datadriftid", min_length=1)
    data_drift_name: str | None = Field(default=None, alias="datadriftname")
    run_id: str | None = Field(default=None, alias="runid")
    base_dataset_id: str | None = Field(default=None, alias="basedatasetid")
    target_dataset_id: str | None = Field(default=None, alias="targetdatasetid")
    drift_coefficient: Annotated[float | None, BeforeValidator(_coefficient)] = Field(
        default=None, alias="driftcoefficient"
    )
    start_time: Instant = Field(default=None, alias="starttime")
    end_time: Instant = Field(default=None, alias="endtime")


def parse_model_ids(model_ids: str | None) -> list[tuple[str, str | None]]:
    """`"a:1,b:2"` -> [("a", "1"), ("b", "2")]; a name without `:` has no version."""
    if not model_ids:
        return []
    out: list[tuple[str, str | None]] = []
    for part in model_ids.split(","):
        part = part.strip()
        if not part:
            continue
        name, sep, version = part.rpartition(":")
        if not sep:
            out.append((part, None))
        else:
            out.append((name.strip(), version.strip() or None))
    return out
