"""Pydantic models of the `data` object of each AML event type.

Keys arrive in camelCase (the wire), PascalCase (docs, historical payloads) or
both in one object, so the decoder lower-cases keys before validation and the
models accept lower-case names. They also accept the exact camelCase spelling, so
a data object whose keys are already canonical (almost every delivery) is
validated as it is, without a lower-cased copy (see decode's fast path). Unknown
keys (e.g. `createdBy`, `tarAsSystemEventDatasetId`) are ignored.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AliasChoices, BaseModel, BeforeValidator, ConfigDict, Field
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


def _key(camel: str) -> AliasChoices:
    # Lower-case first: the general path validates lower-cased keys, and a missing
    # field is reported under the first choice (`data.runid`), as it always was.
    return AliasChoices(camel.lower(), camel)


def wire_keys(model: type[BaseModel]) -> frozenset[str]:
    """The exact camelCase keys a data model reads."""
    return frozenset(f.validation_alias.choices[1] for f in model.model_fields.values())


class RunData(BaseModel):
    model_config = _STRICT

    run_id: str = Field(validation_alias=_key("runId"), min_length=1)
    experiment_id: str | None = Field(default=None, validation_alias=_key("experimentId"))
    experiment_name: str | None = Field(default=None, validation_alias=_key("experimentName"))
    run_type: str | None = Field(default=None, validation_alias=_key("runType"))
    run_status: str | None = Field(default=None, validation_alias=_key("runStatus"))
    run_tags: Tags = Field(default_factory=dict, validation_alias=_key("runTags"))
    run_properties: Tags = Field(default_factory=dict, validation_alias=_key("runProperties"))


class ModelRegisteredData(BaseModel):
    model_config = _STRICT

    model_name: str = Field(validation_alias=_key("modelName"), min_length=1)
    model_version: Annotated[str, BeforeValidator(_version_text)] = Field(
        validation_alias=_key("modelVersion")
    )
    model_tags: Tags = Field(default_factory=dict, validation_alias=_key("modelTags"))
    model_properties: Tags = Field(default_factory=dict, validation_alias=_key("modelProperties"))


class ModelDeployedData(BaseModel):
    model_config = _STRICT

    service_name: str = Field(validation_alias=_key("serviceName"), min_length=1)
    service_compute_type: str | None = Field(
        default=None, validation_alias=_key("serviceComputeType")
    )
    model_ids: str | None = Field(default=None, validation_alias=_key("modelIds"))
    service_tags: Tags = Field(default_factory=dict, validation_alias=_key("serviceTags"))
    service_properties: Tags = Field(
        default_factory=dict, validation_alias=_key("serviceProperties")
    )


class DriftData(BaseModel):
    model_config = _STRICT

    data_drift_id: str = Field(validation_alias=_key("dataDriftId"), min_length=1)
    data_drift_name: str | None = Field(default=None, validation_alias=_key("dataDriftName"))
    run_id: str | None = Field(default=None, validation_alias=_key("runId"))
    base_dataset_id: str | None = Field(default=None, validation_alias=_key("baseDatasetId"))
    target_dataset_id: str | None = Field(default=None, validation_alias=_key("targetDatasetId"))
    drift_coefficient: Annotated[float | None, BeforeValidator(_coefficient)] = Field(
        default=None, validation_alias=_key("driftCoefficient")
    )
    start_time: Instant = Field(default=None, validation_alias=_key("startTime"))
    end_time: Instant = Field(default=None, validation_alias=_key("endTime"))


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
