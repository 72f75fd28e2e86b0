"""transforms._linescan.scan_runs, the native reader of canonical run-event lines.

It may refuse any line; a line it takes must be one orjson takes, and every value it
gives must be orjson's value (texts: what orjson.dumps writes). The oracle below checks
that against orjson for lines written every way JSON allows (blanks anywhere, every
escape style, numbers in every form, keys twice, bytes changed), and the rows of the
lines it takes against the general decoder's.
"""

from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.support.events import WS
from tests.support.rows import fast_and_general
from transforms import fastpath
from transforms.decode import DecodeRules
from transforms.records import RUN_COMPLETED, RUN_STATUS_CHANGED
from transforms.rows import _first, _json

scan_runs = fastpath.scan_runs
PROPS = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
RUN_KEYS = ("runId", "experimentId", "experimentName", "runType", "runStatus")


def test_the_native_scanner_is_built():
    # A missing build would leave every other test here passing on the Python paths alone.
    assert scan_runs is not None, (
        "transforms._linescan is not built: `make install` compiles it (needs gcc and the "
        "Python headers)")


def _oracle(line: bytes, taken: list[tuple]) -> None:
    """Every value `taken` holds is what orjson reads from `line`."""
    doc = orjson.loads(line)  # raises if the scanner took a line orjson refuses
    elements = doc if doc.__class__ is list else [doc]
    assert len(taken) == len(elements)
    for got, element in zip(taken, elements):
        cloud = "specversion" in element
        event_type = element["type" if cloud else "eventType"]
        assert event_type in (RUN_COMPLETED, RUN_STATUS_CHANGED)
        assert got[0] is (event_type == RUN_COMPLETED) and got[1] is cloud
        assert got[2] == element["id"] and got[2].strip()
        assert got[3] == element["source" if cloud else "topic"]
        assert got[4] == element.get("subject")
        assert got[5] == element["time" if cloud else "eventTime"]
        version = element.get("dataVersion")
        assert got[6] == (None if version is None else str(version))
        data = element["data"]
        assert data.keys() <= set(RUN_KEYS) | {"runTags", "runProperties"}
        assert got[7:12] == tuple(data.get(k) for k in RUN_KEYS)
        assert got[7].__class__ is str and got[7]
        tags, props = data.get("runTags") or {}, data.get("runProperties") or {}
        assert got[12:16] == (_first("azureml.pipelinerunid", tags, props),
                              _first("azureml.pipelineid", props, tags),
                              _first("computeTargetType", props, tags),
                              _first("stepType", props, tags))
        assert got[16] == _json(tags) and got[17] == _json(props)
        assert got[18] == (orjson.dumps(element) if doc.__class__ is list else None)


# ---- lines written every way JSON allows ----

BLANKS = st.sampled_from(["", "", "", " ", "\n", "\t", "\r\n ", "\x0c", "\xa0"])  # last two: not JSON


def _escape_all(text: str, upper: bool) -> str:
    out = []
    for ch in text:
        code = ord(ch)
        if code > 0xFFFF:
            code -= 0x10000
            pair = (0xD800 + (code >> 10), 0xDC00 + (code & 0x3FF))
            out += [f"\\u{c:04X}" if upper else f"\\u{c:04x}" for c in pair]
        else:
            out.append(f"\\u{code:04X}" if upper else f"\\u{code:04x}")
    return "".join(out)


@st.composite
def rendered(draw, value) -> str:
    """`value` as JSON text, blanks, escapes and number forms drawn."""
    blank = lambda: draw(BLANKS)  # noqa: E731
    if isinstance(value, dict):
        items = list(value.items())
        if items and draw(st.integers(0, 15)) == 0:  # a key twice
            items.insert(draw(st.integers(0, len(items))), draw(st.sampled_from(items)))
        inner = ",".join(blank() + draw(rendered(k)) + blank() + ":" + draw(rendered(v)) + blank()
                         for k, v in items)
        return "{" + (inner or blank()) + "}"
    if isinstance(value, list):
        return "[" + (",".join(draw(rendered(v)) for v in value) or blank()) + "]"
    if isinstance(value, str):
        style = draw(st.integers(0, 9))
        if style == 0:
            return '"' + _escape_all(value, draw(st.booleans())) + '"'
        if style == 1:
            return json.dumps(value)  # ensure_ascii: \u00e9 for non-ASCII
        if style == 2:
            return orjson.dumps(value).decode().replace("/", "\\/")
        return orjson.dumps(value).decode()
    if isinstance(value, bool) or value is None:
        return orjson.dumps(value).decode()
    if isinstance(value, int):
        return draw(st.sampled_from([str(value), str(value), f"{value}.0", f"{value}e0",
                                     "-0" if value == 0 else str(value)]))
    return draw(st.sampled_from([repr(value), orjson.dumps(value).decode(), f"{value:e}"]))


TEXT = st.one_of(st.text(max_size=6), st.sampled_from(["r1", "Running", "", " ", "x\"y", "a\\b",
                                                       "é", "\x01", "\t", "\U0001F600", "a/b"]))
TAG_VALUE = st.one_of(st.none(), st.booleans(), st.integers(-(2**65), 2**65), TEXT,
                      st.floats(allow_nan=False, allow_infinity=False),
                      st.sampled_from([[], {}, ["a"], {"a": 1}]))
TAG_KEY = st.one_of(TEXT, st.sampled_from(["azureml.pipelinerunid", "azureml.pipelineid",
                                           "computeTargetType", "stepType"]))
TAGS = st.one_of(st.none(), st.dictionaries(TAG_KEY, TAG_VALUE, max_size=5))


@st.composite
def run_events(draw) -> dict:
    data = {"runId": draw(st.one_of(st.just("r1"), TEXT)),
            "experimentId": draw(st.one_of(st.just("e"), st.none(), TEXT)),
            "experimentName": draw(st.one_of(st.just("exp é"), st.none(), TEXT)),
            "runType": draw(st.one_of(st.none(), st.just("azureml.StepRun"))),
            "runStatus": draw(st.one_of(st.just("Running"), st.none(), TEXT)),
            "runTags": draw(TAGS), "runProperties": draw(TAGS)}
    for name in draw(st.lists(st.sampled_from(sorted(data) + ["createdBy", "RunId"]), max_size=2)):
        if name in data and draw(st.booleans()):
            del data[name]
        else:
            data[name] = draw(TAG_VALUE)
    event_type = draw(st.sampled_from([RUN_COMPLETED, RUN_STATUS_CHANGED, "Other.Type"]))
    when = draw(st.sampled_from(["2025-03-01T09:59:59.1234567Z", "2025-03-01T11:59:59+02:00",
                                 "2025-02-30T00:00:00Z"]))
    if draw(st.booleans()):
        event = {"topic": WS, "subject": "experiments/e/runs/r1", "eventType": event_type,
                 "eventTime": when, "id": draw(st.one_of(st.just("evt-1"), TEXT)), "data": data,
                 "dataVersion": draw(st.sampled_from(["2", 2, None, 2.5, True])),
                 "metadataVersion": "1"}
    else:
        event = {"specversion": "1.0", "source": WS, "subject": None, "type": event_type,
                 "time": when, "id": "evt-2", "data": data}
    for name in draw(st.lists(st.sampled_from(sorted(event) + ["topic", "extra", "specversion"]),
                              max_size=1)):
        event[name] = draw(TAG_VALUE)
    return event


@st.composite
def lines(draw) -> bytes:
    events = draw(st.lists(run_events(), min_size=1, max_size=3))
    doc = events[0] if len(events) == 1 and draw(st.booleans()) else events
    line = (draw(BLANKS) + draw(rendered(doc)) + draw(BLANKS)).encode()
    if draw(st.integers(0, 4)) == 0:  # a byte changed, dropped or added anywhere
        at = draw(st.integers(0, len(line)))
        byte = bytes([draw(st.integers(0, 255))])
        line = draw(st.sampled_from([line[:at] + byte + line[at + 1:], line[:at] + line[at + 1:],
                                     line[:at] + byte + line[at:]]))
    return line


@PROPS
@given(line=lines())
def test_every_value_of_a_line_it_takes_is_orjsons(line):
    taken = scan_runs(memoryview(line))
    event("taken" if taken is not None else "refused")
    if taken is not None:
        _oracle(line, taken)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bodies=st.lists(lines(), min_size=1, max_size=4),
       rules=st.sampled_from([DecodeRules(), DecodeRules.build([WS], [RUN_STATUS_CHANGED])]))
def test_lines_it_takes_give_the_general_decoders_rows(bodies, rules):
    fast, general = fast_and_general(bodies, rules)
    assert fast == general


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(data):
    taken = scan_runs(data)
    if taken is not None:
        _oracle(data, taken)


# ---- named cases ----

def _line(tags=None, props=None, **data) -> dict:
    values = {"runId": "r1", "experimentName": "x", "runStatus": "Running",
              "runTags": tags or {}, "runProperties": props or {}}
    values.update(data)
    return {"topic": WS, "subject": "s", "eventType": RUN_STATUS_CHANGED,
            "eventTime": "2025-03-01T09:59:59Z", "id": "evt-1", "data": values,
            "dataVersion": "2", "metadataVersion": "1"}


CANONICAL = orjson.dumps(_line({"azureml.pipelinerunid": "p1", "n": 5},
                               {"stepType": True, "j": '{"a":"b\\\\c"}', "é": "\x1f\n"}))


def test_a_canonical_line_and_its_array_are_taken_with_orjsons_values():
    for line in (CANONICAL, b"[" + CANONICAL + b", " + CANONICAL + b"]",
                 b" \t" + CANONICAL.replace(b",", b" ,\n ") + b"\r"):
        taken = scan_runs(line)
        assert taken is not None, line
        _oracle(line, taken)
    assert scan_runs(CANONICAL)[0][12:16] == ("p1", None, None, "True")


def test_tags_read_from_both_maps_in_the_order_rows_reads_them():
    both = {k: k[:3] for k in ("azureml.pipelinerunid", "azureml.pipelineid", "computeTargetType",
                               "stepType")}
    line = orjson.dumps(_line(both, {k: v.upper() for k, v in both.items()}))
    assert scan_runs(line)[0][12:16] == ("azu", "AZU", "COM", "STE")
    _oracle(line, scan_runs(line))


@pytest.mark.parametrize("line", [
    CANONICAL.replace(b'"n":5', b'"n":5.0'),  # a float: orjson rewrites it
    CANONICAL.replace(b'"n":5', b'"n":1e2'),
    CANONICAL.replace(b'"n":5', b'"n":-0'),
    CANONICAL.replace(b'"n":5', b'"n":99999999999999999999'),  # past 64 bits
    CANONICAL.replace(b'"n":5', b'"n":{"a":1}'),  # nested
    CANONICAL.replace(b'"n":5', b'"n":5,"n":6'),  # a key twice
    CANONICAL.replace(b'"runId":"r1"', b'"runId":"r0","runId":"r1"'),  # a data key twice
    CANONICAL.replace(b'"id":"evt-1"', b'"id":"evt-0","id":"evt-1"'),  # an attribute twice
    CANONICAL.replace(b'"p1"', b'"p\\/1"'),  # an escape orjson does not write
    CANONICAL.replace(b'"p1"', b'"p\\u00411"'),
    CANONICAL.replace(b'\\u001f', b'\\u001F'),  # orjson writes lower-case hex
    CANONICAL.replace(b'"n":5', b'"n":"a\\/b"'),  # an escaped slash inside a map
    CANONICAL.replace(b'"n":5', b'"n":"\\u00e9"'),  # non-ASCII escaped (orjson writes it raw)
    CANONICAL.replace(b'"n":5', b'"n":"\\u000a"'),  # \n's long form
    CANONICAL.replace(b'"p1"', b'"p\xff1"'),  # invalid UTF-8
    CANONICAL.replace(b'"p1"', b'"p\xed\xa0\x801"'),  # an encoded surrogate
    CANONICAL.replace(b'"p1"', b'"\\ud800"'),  # a lone surrogate escape
    CANONICAL.replace(b'"runId"', b'"RunId"'),  # a respelled data key
    CANONICAL.replace(b'"runStatus":"Running"', b'"runStatus":"Running","createdBy":"me"'),
    CANONICAL.replace(b'"r1"', b'""'),  # an empty runId
    CANONICAL.replace(b'"evt-1"', b'" \\t"'),
    CANONICAL.replace(b'"evt-1"', b'"  "'),  # an id that strips to nothing
    CANONICAL.replace(b'"runStatus":"Running"', b'"runStatus":null'),  # RunStatusChanged
    CANONICAL.replace(b'"dataVersion":"2"', b'"dataVersion":true'),
    CANONICAL.replace(b'"topic"', b'"source"'),
    CANONICAL.replace(b'"dataVersion"', b'"specversion":"1.0","dataVersion"'),  # both schemas
    CANONICAL.replace(b'"metadataVersion":"1"', b'"metadataVersion":"\xff"'),  # unread, invalid
    CANONICAL + b"x", b"[]", b"[" + CANONICAL + b",]", b"[" + CANONICAL + b"]]",
    b"\xef\xbb\xbf" + CANONICAL,  # a BOM
])
def test_lines_it_must_refuse_are_refused_and_still_decoded_alike(line):
    assert scan_runs(line) is None
    fast, general = fast_and_general([line])
    assert fast == general


@pytest.mark.parametrize("line, rules, outcome", [
    (CANONICAL, DecodeRules.build([], [RUN_COMPLETED]), "ignored"),  # event type filtered out
    (CANONICAL, DecodeRules.build([WS.replace("prod-ws", "dev-ws")], []), "ignored"),  # workspace
    (CANONICAL.replace(b"2025-03-01T09", b"2025-02-30T09"), DecodeRules(), "dead_letters"),
])
def test_lines_it_reads_but_the_rules_refuse_get_the_general_decoders_outcome(line, rules, outcome):
    assert scan_runs(line) is not None  # read: the refusal is the rules', not the grammar's
    rows, counts = fastpath.decode_lines([line], "f", 1, rules, 0)
    assert (counts.native, counts.fast, getattr(counts, outcome)) == (0, 0, 1)
    fast, general = fast_and_general([line], rules)
    assert fast == general


def test_every_cut_of_a_line_is_refused():
    array = b"[" + CANONICAL + b"," + CANONICAL + b"]"
    for line in (CANONICAL, array):
        for end in range(len(line)):
            assert scan_runs(line[:end]) is None, end


def test_decode_lines_reads_canonical_run_lines_natively():
    rows, counts = fastpath.decode_lines([CANONICAL, b"[" + CANONICAL + b"]", b"{}"], "f", 1,
                                         DecodeRules(), 0)
    assert (counts.native, counts.fast, counts.dead_letters) == (2, 2, 1)
    fast, general = fast_and_general([CANONICAL, b"[" + CANONICAL + b"]", b"{}"])
    assert fast == general
