"""The decoder's fast path (data keys already canonical: no lower-cased copy) must give
exactly what the general path gives, for any data object: same rows, same dead letters
with the same reasons and texts, same ignored rows.

Each example decodes one body twice, once as shipped and once with the fast path turned
off, and compares everything the decoder produced.
"""

from __future__ import annotations

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import transforms.decode as decode
from tests.helpers import as_dicts
from transforms.decode import DecodeRules, decode_body
from transforms.models import DriftData, ModelDeployedData, ModelRegisteredData, RunData, wire_keys
from transforms.records import (
    AML_EVENT_TYPES,
    MODEL_DEPLOYED,
    MODEL_REGISTERED,
    RUN_COMPLETED,
    RUN_STATUS_CHANGED,
    Origin,
)
from transforms.rows import TableRows

WS = ("/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/"
      "Microsoft.MachineLearningServices/workspaces/prod-ws")
MODELS = (RunData, ModelRegisteredData, ModelDeployedData, DriftData)
KNOWN = sorted(set().union(*(wire_keys(m) for m in MODELS)))
ORIGIN = Origin("file", file="fast.ndjson", line=7)
PROPS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


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
value = st.recursive(
    scalar,
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=6,
)
data_object = st.dictionaries(key, value, max_size=10)


def _valid_base(event_type: str) -> dict:
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


def _body(event_type: str, data) -> bytes:
    return orjson.dumps({
        "topic": WS, "subject": "s", "eventType": event_type, "eventTime": "2025-03-01T09:59:59Z",
        "id": "evt-1", "dataVersion": "2", "metadataVersion": "1", "data": data,
    })


def _everything(body: bytes) -> tuple:
    result = decode_body(body, ORIGIN, DecodeRules())
    rows = TableRows()
    rows.add(result, 1_767_225_600_000_000)
    return (as_dicts(rows), [(d.reason, d.error, d.payload) for d in result.dead_letters],
            [(i.reason, i.detail) for i in result.ignored], [e.data for e in result.events])


def _both_paths(body: bytes, monkeypatch: pytest.MonkeyPatch) -> tuple[tuple, tuple]:
    fast = _everything(body)
    with monkeypatch.context() as m:
        m.setattr(decode, "canonical_data_keys", lambda data, spec: False)
        general = _everything(body)
    return fast, general


@PROPS
@given(event_type=st.sampled_from(AML_EVENT_TYPES), data=data_object)
def test_arbitrary_data_objects_decode_identically_on_both_paths(event_type, data):
    with pytest.MonkeyPatch.context() as mp:
        fast, general = _both_paths(_body(event_type, data), mp)
    assert fast == general


@PROPS
@given(
    event_type=st.sampled_from(AML_EVENT_TYPES),
    drop=st.sets(st.sampled_from(KNOWN), max_size=3),
    extra=st.dictionaries(key, value, max_size=4),
    as_array=st.booleans(),
)
def test_mutated_valid_events_decode_identically_on_both_paths(event_type, drop, extra, as_array):
    data = {k: v for k, v in _valid_base(event_type).items() if k not in drop}
    data.update(extra)  # respelled duplicates, wrong types, unknown keys
    body = _body(event_type, data)
    if as_array:
        body = b"[" + body + b"," + body + b"]"
    with pytest.MonkeyPatch.context() as mp:
        fast, general = _both_paths(body, mp)
    assert fast == general


def test_the_fast_path_is_taken_for_canonical_keys_only(monkeypatch):
    calls = []
    real = decode._lower_keys
    monkeypatch.setattr(decode, "_lower_keys", lambda d: calls.append(d) or real(d))
    canonical = _valid_base(RUN_STATUS_CHANGED) | {"createdBy": "me"}
    assert decode_body(_body(RUN_STATUS_CHANGED, canonical), ORIGIN, DecodeRules()).events
    assert calls == []
    respelled = dict(canonical, RunId="r1")  # two spellings of one key: general path merges them
    assert decode_body(_body(RUN_STATUS_CHANGED, respelled), ORIGIN, DecodeRules()).events
    assert len(calls) == 1
