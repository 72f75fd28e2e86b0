"""The backfill's fast path (transforms.fastpath) must store exactly what the general
decoder stores, for any line: same rows in the same order, same counts.

Each example decodes a list of lines twice, with the fast path on and off
(`fast=False` is decode_body + TableRows.add, line by line), and compares every row.
"""

from __future__ import annotations

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.events import INGESTED_US, WS, corpus_files
from tests.support.rows import fast_and_general
from tests.support.strategies import key, valid_data, value
from transforms.decode import DecodeRules
from transforms.fastpath import _Lines, decode_lines
from transforms.records import AML_EVENT_TYPES, RUN_COMPLETED, stable_key

OTHER_WS = WS.replace("prod-ws", "dev-ws")
PROPS = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _eventgrid(event_type: str, data: dict, **over) -> dict:
    event = {"topic": WS, "subject": "experiments/e/runs/r1", "eventType": event_type,
             "eventTime": "2025-03-01T09:59:59.1234567Z", "id": "evt-1", "data": data,
             "dataVersion": "2", "metadataVersion": "1"}
    event.update(over)
    return event


def _cloudevent(event_type: str, data: dict, **over) -> dict:
    event = {"specversion": "1.0", "source": WS, "subject": "experiments/e/runs/r1",
             "type": event_type, "time": "2025-03-01T11:59:59.123456+02:00", "id": "evt-2",
             "data": data, "datacontenttype": "application/json"}
    event.update(over)
    return event


odd_value = st.one_of(
    value, st.just(WS), st.just(WS.upper() + "/"), st.just(OTHER_WS), st.just("not/a/workspace"),
    st.sampled_from(AML_EVENT_TYPES), st.just(RUN_COMPLETED.lower()), st.just("Other.Type"),
    st.sampled_from(["2025-03-01T09:59:59Z", "2025-03-01T09:59:59", "2025-03-01", "1.0", "",
                     " \t", "2025-02-30T00:00:00Z", "9999-12-31T23:59:59.9999999-01:00"]),
)
top_key = st.sampled_from(["id", "topic", "subject", "eventType", "eventTime", "data",
                           "dataVersion", "metadataVersion", "specversion", "specVersion",
                           "source", "type", "time", "data_base64", "records", "Id", "extra"])


@st.composite
def event_objects(draw) -> object:
    """A valid event with up to three mutations: a data field or an attribute dropped,
    retyped, respelled or added."""
    event_type = draw(st.sampled_from(AML_EVENT_TYPES))
    data = valid_data(event_type)
    event = draw(st.sampled_from([_eventgrid, _cloudevent]))(event_type, data)
    for _ in range(draw(st.integers(1, 3))):
        target, names = draw(st.sampled_from([(data, key), (event, top_key)]))
        name = draw(st.one_of(st.sampled_from(sorted(target)), names))
        if draw(st.booleans()):
            target.pop(name, None)
        else:
            target[name] = draw(st.one_of(st.sampled_from(["", " ", None, 1, [], {}]), odd_value))
    return event if draw(st.integers(0, 9)) else draw(value)  # now and then not an event


@st.composite
def lines(draw) -> bytes:
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(st.sampled_from([b"", b"  ", b"{bad", b"[]", b"null", b"\xff\xfe", b"[1]"]))
    if kind <= 2:
        elements = draw(st.lists(event_objects(), min_size=1, max_size=3))
        return orjson.dumps(elements)
    return orjson.dumps(draw(event_objects()))


rules_strategy = st.sampled_from([
    DecodeRules(),
    DecodeRules.build([WS], list(AML_EVENT_TYPES)),
    DecodeRules.build([OTHER_WS.upper()], list(AML_EVENT_TYPES)),
    DecodeRules.build([], [RUN_COMPLETED, "Other.Type"]),
])


ODD_VALUES = ["", " ", None, 0, 1, True, 1.5, [], {}, [{}], WS, OTHER_WS, "x", "2025-13-01",
              "2025-03-01T09:59:59+01:00", RUN_COMPLETED.lower(), "Running"]


@pytest.mark.parametrize("build", [_eventgrid, _cloudevent])
@pytest.mark.parametrize("event_type", AML_EVENT_TYPES)
def test_every_single_attribute_or_field_change_gives_identical_rows(build, event_type):
    """Deterministic companion of the property test: each attribute and data field of a
    valid event dropped, or set to each odd value, one at a time."""
    bodies = []
    for where in ("top", "data"):
        probe = build(event_type, valid_data(event_type))
        names = set(probe if where == "top" else probe["data"])
        names |= {"specVersion", "data_base64", "records", "Id", "dataversion"} if where == "top" \
            else {k[:1].upper() + k[1:] for k in probe["data"]}
        for name in sorted(names):
            for change in ["drop"] + ODD_VALUES:
                event = build(event_type, valid_data(event_type))
                target = event if where == "top" else event["data"]
                if change == "drop":
                    target.pop(name, None)
                else:
                    target[name] = change
                bodies += [orjson.dumps(event), orjson.dumps([event, event])]
    for rules in (DecodeRules(), DecodeRules.build([WS], [RUN_COMPLETED, event_type])):
        fast, general = fast_and_general(bodies, rules)
        assert fast == general


@PROPS
@given(bodies=st.lists(lines(), min_size=1, max_size=8), rules=rules_strategy)
def test_any_lines_give_identical_rows_with_and_without_the_fast_path(bodies, rules):
    fast, general = fast_and_general(bodies, rules)
    assert fast == general


def test_corpus_files_give_identical_rows_with_and_without_the_fast_path():
    bodies = [path.read_bytes().strip() for path in corpus_files()]
    for rules in (DecodeRules(), DecodeRules.build([WS], [RUN_COMPLETED])):
        fast, general = fast_and_general(bodies, rules)
        assert fast == general


def test_canonical_lines_take_the_fast_path_and_others_do_not():
    data = valid_data(RUN_COMPLETED)
    canonical = [_eventgrid(RUN_COMPLETED, data), _cloudevent(RUN_COMPLETED, data)]
    bodies = [orjson.dumps(e) for e in canonical] + [orjson.dumps(canonical)]
    bodies += [
        orjson.dumps(_eventgrid(RUN_COMPLETED, dict(data, RunId="r2"))),  # two spellings
        orjson.dumps(_cloudevent(RUN_COMPLETED, data, specVersion="1.0")),  # quirk to record
        orjson.dumps(_eventgrid(RUN_COMPLETED, data, topic=OTHER_WS)),  # filtered out
        b"{bad",
    ]
    rows, counts = decode_lines(bodies, "f.ndjson", 1, DecodeRules.build([WS], list(AML_EVENT_TYPES)),
                                INGESTED_US)
    assert counts.fast == 3
    assert (counts.events, counts.ignored, counts.dead_letters) == (6, 1, 1)
    assert [r[-4] for r in rows.rows["raw_events"]] == [1, 2, 3, 3, 4, 5]  # source_line


@pytest.mark.parametrize("first_line", [1, 1000])
def test_blank_lines_are_counted_and_line_numbers_kept(first_line):
    body = orjson.dumps(_eventgrid(RUN_COMPLETED, valid_data(RUN_COMPLETED)))
    rows, counts = decode_lines([b"", body, b"  ", body], "f.ndjson", first_line, DecodeRules(),
                                INGESTED_US)
    assert (counts.bodies, counts.blank_lines, counts.events) == (2, 2, 2)
    assert [r[-4] for r in rows.rows["raw_events"]] == [first_line + 1, first_line + 3]



no_surrogates = st.text(st.characters(blacklist_categories=("Cs",)))  # JSON text has none


@given(workspace=no_surrogates, event_ids=st.lists(no_surrogates, max_size=3))
def test_the_per_workspace_key_hasher_gives_stable_keys(workspace, event_ids):
    lines = _Lines(DecodeRules(), "f.ndjson", INGESTED_US)
    assert [lines.key(workspace, e) for e in event_ids] == [stable_key(workspace, e) for e in event_ids]
