"""Property-based tests: order, duplication and arbitrary input.

- Any permutation of a stream, with any events duplicated, gives the same views.
- Arbitrary bytes (and arbitrary JSON) never make the decoder raise, and every
  body ends as events, dead letters or ignored rows.
"""

from __future__ import annotations

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.events import RC, run_event
from tests.support.rows import memory_views, rows_for
from transforms.decode import DecodeRules, decode_body
from transforms.records import Origin
from transforms.rows import TableRows

VIEWS = ("runs", "run_status_history", "run_durations", "failure_rates", "monitor_metrics",
         "models", "deployments", "drift", "dead_letters")
STATUSES = ("NotStarted", "Queued", "Running", "Finalizing", "Completed", "Failed", "Canceled")


def _stream() -> list[bytes]:
    """A fixed stream with ties, terminal races, RunCompleted echoes and bad bodies."""
    bodies = []
    for i in range(6):
        run = f"run-{i}"
        for step, status in enumerate(STATUSES[: 3 + i % 4]):
            bodies.append(run_event(run, status, f"2025-01-0{1 + i % 3}T10:0{step}:00Z",
                                    experiment=f"exp{i % 2}", run_type=("automl", None)[i % 2]))
        if i % 3 == 0:  # a terminal status at the same instant as Running
            bodies.append(run_event(run, "Canceled", f"2025-01-0{1 + i % 3}T10:02:00Z"))
        bodies.append(run_event(run, None, f"2025-01-0{1 + i % 3}T10:09:00Z", event_type=RC))
    bodies += [b"{broken", b'{"runId": "x"}', b"[]"]
    return bodies


STREAM = _stream()
BASELINE = {view: sorted(memory_views(rows_for(STREAM)).execute(f"SELECT * FROM {view}").fetchall(),
                         key=repr) for view in VIEWS}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    order=st.permutations(range(len(STREAM))),
    dups=st.lists(st.integers(min_value=0, max_value=len(STREAM) - 1), max_size=20),
)
def test_any_order_with_any_duplicates_gives_identical_views(order, dups):
    bodies = [STREAM[i] for i in order] + [STREAM[i] for i in dups]
    con = memory_views(rows_for(bodies))
    for view in VIEWS:
        got = sorted(con.execute(f"SELECT * FROM {view}").fetchall(), key=repr)
        if view == "dead_letters":
            # A repeated poison body at another line is another message and gets its
            # own row; what must not change is which bodies were dead-lettered and why.
            assert {(r[0], r[2]) for r in got} == {(r[0], r[2]) for r in BASELINE[view]}
        else:
            assert got == BASELINE[view], view


def test_redelivered_poison_message_is_one_dead_letter():
    rows = TableRows()
    for sequence in (5, 6, 5):  # 5 is delivered twice (at-least-once)
        origin = Origin("eventhub", hub="ns/eh", partition_id="1", offset=str(sequence * 100),
                        sequence_number=sequence, enqueued_us=0)
        rows.add(decode_body(b"{broken", origin, DecodeRules()), 0)
    con = memory_views(rows)
    assert con.execute("SELECT sequence_number FROM dead_letters ORDER BY 1").fetchall() == [(5,), (6,)]


HUB = Origin("eventhub", hub="ns/eh", partition_id="0", offset="0", sequence_number=0, enqueued_us=0)


def _accounted(result) -> int:
    return len(result.events) + len(result.dead_letters) + len(result.ignored)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=512))
def test_arbitrary_bytes_never_raise_and_are_always_accounted_for(raw):
    result = decode_body(raw, HUB, DecodeRules())
    assert _accounted(result) >= 1
    for dead in result.dead_letters:
        assert dead.reason and dead.error and isinstance(dead.payload, bytes)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**63 - 1) | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=6),
    max_leaves=25,
)
ENVELOPE_KEYS = ("id", "topic", "source", "subject", "eventType", "type", "specversion", "event_type",
                 "eventTime", "time", "data", "runId", "runStatus", "modelName", "modelVersion")


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.sampled_from(ENVELOPE_KEYS), json_values, max_size=10),
       st.dictionaries(st.sampled_from(("runId", "runStatus", "RunTags", "modelName", "modelVersion",
                                         "serviceName", "modelIds", "dataDriftId", "startTime")),
                       json_values, max_size=6),
       st.sampled_from(("RunStatusChanged", "RunCompleted", "ModelRegistered", "ModelDeployed",
                        "DatasetDriftDetected")),
       st.booleans())
def test_arbitrary_event_shaped_json_never_raises(top, data, kind, as_array):
    obj = dict(top)
    if "eventType" in obj or "type" in obj:
        obj["eventType" if "eventType" in obj else "type"] = "Microsoft.MachineLearningServices." + kind
    obj.setdefault("data", data)
    raw = orjson.dumps([obj, obj] if as_array else obj)
    result = decode_body(raw, HUB, DecodeRules())
    assert _accounted(result) == (2 if as_array else 1)
    rows = rows_for([raw])  # normalization must accept whatever the decoder accepted
    assert len(rows.rows["raw_events"]) == len(result.events)
