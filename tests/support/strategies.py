"""Hypothesis strategies shared by several test modules, and the valid data objects they
mutate from."""

from __future__ import annotations

from hypothesis import strategies as st

from transforms.models import DriftData, ModelDeployedData, ModelRegisteredData, RunData, wire_keys
from transforms.records import MODEL_DEPLOYED, MODEL_REGISTERED, RUN_COMPLETED, RUN_STATUS_CHANGED

MODELS = (RunData, ModelRegisteredData, ModelDeployedData, DriftData)
KNOWN = sorted(set().union(*(wire_keys(m) for m in MODELS)))  # every data key on the wire


def _respell(key: str, flips: list[bool]) -> str:
    return "".join(c.swapcase() if flip else c for c, flip in zip(key, flips + [False] * len(key)))


known_key = st.sampled_from(KNOWN)
# camelCase as on the wire, or the same key in another case (PascalCase, lower, random)
key = st.one_of(
    known_key,
    known_key.map(str.lower),
    known_key.map(lambda k: k[:1].upper() + k[1:]),
    st.builds(_respell, known_key, st.lists(st.booleans(), max_size=24)),
    st.sampled_from(["createdBy", "tarAsSystemEventDatasetId", "notes", "RUNID", "x"]),
    st.text(max_size=8),
)
scalar = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 3), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False),
    st.sampled_from(["", " ", "r1", "Running", "running", "Completed", "m:1,n", "a:1, b:2",
                     "2024-01-01T00:00:00Z", "2024-01-01T00:00:00.1234567+02:00", "2024-13-01",
                     "not a time"]),
    st.text(max_size=6),
)
# any JSON value, nested a little
value = st.recursive(
    scalar,
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=6,
)
data_object = st.dictionaries(key, value, max_size=10)


def valid_data(event_type: str) -> dict:
    """A data object that validates, so mutations start from a real event."""
    if event_type in (RUN_COMPLETED, RUN_STATUS_CHANGED):
        return {"runId": "r1", "runStatus": "Running", "experimentId": "e", "experimentName": "x",
                "runType": None, "runTags": {"a": 1}, "runProperties": {"stepType": "S"}}
    if event_type == MODEL_REGISTERED:
        return {"modelName": "m", "modelVersion": 3, "modelTags": {}, "modelProperties": {}}
    if event_type == MODEL_DEPLOYED:
        return {"serviceName": "s", "serviceComputeType": "ACI", "modelIds": "m:1,n:2",
                "serviceTags": {}, "serviceProperties": {"p": "q"}}
    return {"dataDriftId": "d", "dataDriftName": "n", "runId": "r", "baseDatasetId": "b",
            "targetDatasetId": "t", "driftCoefficient": 1, "startTime": "2024-01-01T00:00:00Z",
            "endTime": "2024-01-02T00:00:00-07:00"}
