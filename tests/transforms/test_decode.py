"""Decoder behaviour beyond the corpus: envelopes, filters, bad input, coordinates."""

from __future__ import annotations

import base64

import orjson
import pytest

from tests.support.rows import decode_to_rows
from transforms.decode import DEAD_LETTER_REASONS, DecodeRules, decode_body
from transforms.records import Origin
from transforms.timeparse import parse_instant_us

WS = ("/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/"
      "Microsoft.MachineLearningServices/workspaces/Prod-WS")
OTHER_WS = WS.replace("Prod-WS", "Dev-WS")
RSC = "Microsoft.MachineLearningServices.RunStatusChanged"
HUB = Origin("eventhub", hub="ns.servicebus.windows.net/aml", partition_id="2", offset="8192",
             sequence_number=41, enqueued_us=parse_instant_us("2025-03-01T10:00:00Z"))


def eg(run_status="Running", **overrides):
    event = {
        "topic": WS, "subject": "experiments/e1/runs/r1", "eventType": RSC,
        "eventTime": "2025-03-01T09:59:59.1234567Z", "id": "evt-1", "dataVersion": "2",
        "metadataVersion": "1",
        "data": {"runStatus": run_status, "experimentId": "e1", "experimentName": "exp",
                 "runId": "r1", "runType": None, "runTags": {}, "runProperties": {}},
    }
    event.update(overrides)
    return event


def body(obj) -> bytes:
    return orjson.dumps(obj)


def only_dead(raw: bytes, origin: Origin = HUB):
    result = decode_body(raw, origin, DecodeRules())
    assert result.events == [] and result.ignored == []
    assert len(result.dead_letters) == 1
    return result.dead_letters[0]


@pytest.mark.parametrize(
    "raw, reason",
    [
        (b"", "empty_body"),
        (b"  \n", "empty_body"),
        (b"{not json", "invalid_json"),
        (b"\xff\xfe{}", "invalid_json"),
        (b'"a string"', "not_an_event"),
        (b"42", "not_an_event"),
        (b"null", "not_an_event"),
        (b"[]", "not_an_event"),
        (b'{"hello": "world"}', "not_an_event"),
        (b'{"runId": "r1", "runStatus": "Failed"}', "bare_data_object"),
    ],
)
def test_bad_bodies_become_dead_letters_with_raw_bytes_and_coordinates(raw, reason):
    dead = only_dead(raw)
    assert dead.reason == reason and reason in DEAD_LETTER_REASONS
    assert dead.payload == raw
    assert dead.error
    assert (dead.origin.partition_id, dead.origin.offset, dead.origin.sequence_number) == ("2", "8192", 41)


@pytest.mark.parametrize(
    "mutate, reason, mentions",
    [
        (lambda e: e["data"].pop("runId"), "missing_field", "runId"),
        (lambda e: e["data"].update(runId=""), "missing_field", "runId"),
        (lambda e: e["data"].update(runId=12), "wrong_type", "runid"),
        (lambda e: e["data"].update(runTags=["a"]), "wrong_type", "runtags"),
        (lambda e: e["data"].pop("runStatus"), "missing_field", "runStatus"),
        (lambda e: e.pop("id"), "missing_field", "id"),
        (lambda e: e.update(id=7), "wrong_type", "id"),
        (lambda e: e.update(eventTime="yesterday"), "invalid_time", "eventtime"),
        (lambda e: e.update(eventTime=1700000000), "invalid_time", "eventtime"),
        (lambda e: e.update(data=None), "missing_field", "data"),
        (lambda e: e.update(data=[1, 2]), "wrong_type", "data"),
        (lambda e: e.update(data="not json"), "wrong_type", "data"),
        (lambda e: e.update(subject=5), "wrong_type", "subject"),
    ],
)
def test_invalid_events_are_dead_lettered_with_a_reason_that_names_the_field(mutate, reason, mentions):
    event = eg()
    mutate(event)
    dead = only_dead(body(event))
    assert dead.reason == reason
    assert mentions.lower() in dead.error.lower()


def test_drift_with_bad_window_time_is_invalid_time():
    event = eg(eventType="Microsoft.MachineLearningServices.DatasetDriftDetected",
               data={"dataDriftId": "d", "runId": "r", "startTime": "soon"})
    assert only_dead(body(event)).reason == "invalid_time"


def test_model_version_bool_is_wrong_type_not_true():
    event = eg(eventType="Microsoft.MachineLearningServices.ModelRegistered",
               data={"modelName": "m", "modelVersion": True})
    assert only_dead(body(event)).reason == "wrong_type"


def test_array_with_good_and_bad_elements_keeps_the_good_and_indexes_the_bad():
    good1, good2 = eg(id="a"), eg("Completed", id="b")
    bad = eg(id="c")
    bad["data"].pop("runId")
    raw = body([good1, bad, "junk", good2])
    result = decode_body(raw, HUB, DecodeRules())
    assert [e.envelope.event_id for e in result.events] == ["a", "b"]
    assert [e.index for e in result.events] == [0, 3]
    assert [(d.reason, d.index) for d in result.dead_letters] == [("missing_field", 1), ("not_an_event", 2)]
    # each dead element carries its own JSON, not the whole batch
    assert orjson.loads(result.dead_letters[0].payload)["id"] == "c"
    assert orjson.loads(result.events[1].payload)["id"] == "b"


def test_single_object_payload_is_the_body_itself():
    raw = body(eg())
    [event] = decode_body(raw, HUB, DecodeRules()).events
    assert event.payload == raw and event.index is None


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2025-03-01T09:59:59.1234567Z", "2025-03-01T09:59:59.123456Z"),
        ("2025-03-01T09:59:59.123456+00:00", "2025-03-01T09:59:59.123456Z"),
        ("2025-03-01T02:59:59.5-07:00", "2025-03-01T09:59:59.5Z"),
        ("2025-03-01T15:29:59+05:30", "2025-03-01T09:59:59Z"),
        ("2025-03-01T09:59:59", "2025-03-01T09:59:59Z"),
    ],
)
def test_event_times_are_utc_instants(text, expected):
    [event] = decode_body(body(eg(eventTime=text)), HUB, DecodeRules()).events
    assert event.envelope.event_time_us == parse_instant_us(expected)


@pytest.mark.parametrize(
    "raw, status",
    [("failed", "Failed"), ("FAILED", "Failed"), ("Cancelled", "Canceled"), ("canceled", "Canceled"),
     ("Finished", "Completed"), ("not started", "NotStarted"), ("cancelrequested", "CancelRequested"),
     ("NotResponding", "NotResponding"), ("paused", "Paused"), ("Exploded", "Unknown")],
)
def test_run_status_is_normalized_and_raw_text_kept(raw, status):
    _, tables = decode_to_rows(body(eg(raw)), HUB)
    [run] = tables["run_events"]
    assert (run["status"], run["status_raw"]) == (status, raw)


def test_cloudevents_data_base64_and_json_string_data_are_decoded():
    data = eg()["data"]
    ce = {"specversion": "1.0", "id": "x1", "source": WS, "type": RSC,
          "time": "2025-03-01T00:00:00Z", "data_base64": base64.b64encode(body(data)).decode()}
    [event] = decode_body(body(ce), HUB, DecodeRules()).events
    assert event.data.run_id == "r1" and "data_base64" in event.envelope.quirks
    doubled = eg(data=orjson.dumps(data).decode())
    [event] = decode_body(body(doubled), HUB, DecodeRules()).events
    assert event.data.run_id == "r1" and "data_json_string" in event.envelope.quirks


def test_unknown_attributes_and_data_fields_are_ignored():
    event = eg(operationId="x", title="y")
    event["data"]["createdBy"] = "someone"
    event["data"]["newField"] = {"nested": True}
    [decoded] = decode_body(body(event), HUB, DecodeRules()).events
    assert decoded.data.run_id == "r1"


def test_two_spellings_of_one_key_prefer_the_non_null_one():
    event = eg()
    event["data"]["RunTags"] = {"k": "v"}
    event["data"]["runTags"] = None
    _, tables = decode_to_rows(body(event), HUB)
    assert tables["run_events"][0]["run_tags"] == '{"k":"v"}'


def test_workspace_filter_is_case_insensitive_and_ignores_others_as_rows():
    rules = DecodeRules.build([WS.lower() + "/"], [RSC])
    kept = decode_body(body(eg(topic=WS.upper())), HUB, rules)
    assert len(kept.events) == 1
    foreign = decode_body(body(eg(topic=OTHER_WS)), HUB, rules)
    assert foreign.events == [] and foreign.dead_letters == []
    [ignored] = foreign.ignored
    assert ignored.reason == "foreign_workspace" and ignored.event_id == "evt-1"
    missing = decode_body(body(eg(topic=None)), HUB, rules)
    assert [i.reason for i in missing.ignored] == ["foreign_workspace"]


def test_event_types_outside_the_filter_are_ignored_rows_even_when_malformed():
    rules = DecodeRules.build([], ["Microsoft.MachineLearningServices.ModelRegistered"])
    result = decode_body(body(eg()), HUB, rules)
    assert [i.reason for i in result.ignored] == ["unknown_event_type"]
    storage = eg(eventType="Microsoft.Storage.BlobCreated", data={"url": "x"})
    result = decode_body(body(storage), HUB, DecodeRules())
    assert [(i.reason, i.event_type) for i in result.ignored] == [
        ("unknown_event_type", "Microsoft.Storage.BlobCreated")]


def test_event_type_matching_is_case_insensitive_and_canonical():
    [event] = decode_body(body(eg(eventType=RSC.lower())), HUB, DecodeRules()).events
    assert event.envelope.event_type == RSC


def test_diagnostic_records_document_is_an_ignored_row():
    raw = b'{"records":[{"category":"AmlRunStatusChangedEvent","time":"2025-01-01T00:00:00Z"}]}'
    result = decode_body(raw, HUB, DecodeRules())
    assert [i.reason for i in result.ignored] == ["diagnostic_records"]


def test_dedupe_key_depends_on_workspace_and_id_only():
    a = decode_body(body(eg()), HUB, DecodeRules()).events[0].envelope
    b = decode_body(body(eg("Completed", topic=WS.upper() + "/")), HUB, DecodeRules()).events[0].envelope
    c = decode_body(body(eg(id="evt-2")), HUB, DecodeRules()).events[0].envelope
    d = decode_body(body(eg(topic=OTHER_WS)), HUB, DecodeRules()).events[0].envelope
    assert a.key == b.key
    assert len({a.key, c.key, d.key}) == 3


def test_missing_time_with_enqueued_time_falls_back_and_without_it_dead_letters():
    event = eg()
    del event["eventTime"]
    [decoded] = decode_body(body(event), HUB, DecodeRules()).events
    assert decoded.envelope.event_time_us == HUB.enqueued_us
    assert decoded.envelope.time_source == "enqueued"
    assert only_dead(body(event), Origin("file", file="f.ndjson", line=9)).reason == "missing_time"


def test_deployment_model_ids_parse_and_empty_ids_still_give_a_row():
    dep = {"serviceName": "svc", "serviceComputeType": "AKS", "modelIds": " a:1 , b:v2,,c "}
    _, tables = decode_to_rows(body(eg(eventType="Microsoft.MachineLearningServices.ModelDeployed", data=dep)))
    assert [(r["model_name"], r["model_version"], r["model_ordinal"]) for r in tables["model_deployments"]] == [
        ("a", "1", 0), ("b", "v2", 1), ("c", None, 2)]
    dep["modelIds"] = ""
    _, tables = decode_to_rows(body(eg(eventType="Microsoft.MachineLearningServices.ModelDeployed", data=dep)))
    assert [(r["service_name"], r["model_name"]) for r in tables["model_deployments"]] == [("svc", None)]
