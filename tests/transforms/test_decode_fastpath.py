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
from tests.support.events import WS
from tests.support.rows import as_dicts
from tests.support.strategies import KNOWN, data_object, key, valid_data, value
from transforms.decode import DecodeRules, decode_body
from transforms.records import AML_EVENT_TYPES, RUN_STATUS_CHANGED, Origin
from transforms.rows import TableRows

ORIGIN = Origin("file", file="fast.ndjson", line=7)
PROPS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


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
    data = {k: v for k, v in valid_data(event_type).items() if k not in drop}
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
    canonical = valid_data(RUN_STATUS_CHANGED) | {"createdBy": "me"}
    assert decode_body(_body(RUN_STATUS_CHANGED, canonical), ORIGIN, DecodeRules()).events
    assert calls == []
    respelled = dict(canonical, RunId="r1")  # two spellings of one key: general path merges them
    assert decode_body(_body(RUN_STATUS_CHANGED, respelled), ORIGIN, DecodeRules()).events
    assert len(calls) == 1
