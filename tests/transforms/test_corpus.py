"""Every published payload in tests/data/corpus decodes to the outcome it deserves.

One expectation per file: which table its event lands in and the values the
quirk in its FINDINGS row is about, or the dead-letter reason it must get.
"""

from __future__ import annotations

import pytest

from tests.support.events import CORPUS, corpus_files
from tests.support.rows import decode_to_rows
from transforms.records import Origin
from transforms.timeparse import parse_instant_us

JENNS = "jenns-canary"
PLACEHOLDER = "{workspace-name}"
DRIFT_WS = "driftDemoWS"
TARGET = "d7e74d2e-c972-4266-b5fb-6c9c182d2a74"
SPEC_RUN = "AutoML_ad912b2d-6467-4f32-a616-dbe4af6dd8fc_5"
JENNS_RUN = "AutoML_ad912b2d-6467-4f32-a616-dbe4af6dd8fc"


def us(text: str) -> int:
    return parse_instant_us(text)


SPEC_DRIFT = {
    "table": "drift_detections", "workspace_name": PLACEHOLDER, "subject": "datadrifts/{}/runs/{}",
    "monitor_id": "01d29aa4-e6a4-470a-9ef3-66660d21f8ef", "monitor_name": "myDriftMonitor",
    "target_dataset_id": TARGET, "coefficient": 0.8350349068479208,
    # -07:00 offsets and +00:00 offsets name the same instants
    "window_start": us("2019-07-04T00:00:00Z"), "window_end": us("2019-07-05T00:00:00Z"),
    "event_time": us("2017-06-26T18:41:00.958410Z"),
}
DEMO_WS_DRIFT = {
    "table": "drift_detections", "workspace_name": DRIFT_WS,
    "subject": "datadrift/01d29aa4-e6a4-470a-9ef3-66660d21f8ef/run/01d29aa4-e6a4-470a-9ef3-66660d21f8ef_1571590300380",
    "monitor_name": "copetersDriftMonitor3", "run_id": "01d29aa4-e6a4-470a-9ef3-66660d21f8ef_1571590300380",
    "event_time": us("2019-10-20T17:08:08.467191Z"), "window_start": us("2019-07-04T00:00:00Z"),
}
SPEC_DEPLOY = {
    "table": "model_deployments", "rows": 2, "service_name": "my-sklearn-service",
    "compute_type": "ACI", "models": [("sklearn_regression_model", "1"), ("sklearn_regression_model", "2")],
}
JENNS_DEPLOY = {
    "table": "model_deployments", "rows": 2, "service_name": "aciservice1", "workspace_name": JENNS,
    "models": [("my_first_model", "1"), ("my_second_model", "1")],
    "service_tags": '{"mytag":"test tag"}', "event_time": us("2019-10-23T18:20:08.8824474Z"),
}
SPEC_MODEL = {
    "table": "model_registrations", "model_name": "sklearn_regression_model", "model_version": "20",
    "model_tags": '{"area":"diabetes","type":"regression"}', "workspace_name": PLACEHOLDER,
}
JENNS_MODEL = {
    "table": "model_registrations", "model_name": "sklearn_regression_model", "model_version": "3",
    "workspace_name": JENNS, "subject": "models/sklearn_regression_model:3",
    "event_time": us("2019-10-17T22:23:57.5350054Z"),
}
SPEC_RUN_COMPLETED = {
    "table": "run_events", "run_id": SPEC_RUN, "status": "Completed", "status_raw": None,
    "run_type": None, "experiment_name": "automl-local-regression", "run_tags": "{}",
}
JENNS_RUN_COMPLETED = {
    "table": "run_events", "run_id": JENNS_RUN, "status": "Completed", "run_type": "automl",
    "workspace_name": JENNS,
    # PascalCase "RunTags" beside camelCase runProperties in one object
    "run_tags": '{"experiment_status":"ModelSelection","experiment_status_descr":"Beginning model selection."}',
    "run_properties": '{"num_iterations":"10","target":"local"}',
}
SPEC_FAILED = {"table": "run_events", "run_id": SPEC_RUN, "status": "Failed", "status_raw": "failed"}
JENNS_RUNNING = {"table": "run_events", "run_id": JENNS_RUN, "status": "Running",
                 "status_raw": "Running", "event_time": us("2020-03-09T23:53:04.4579724Z")}

EXPECTED: dict[str, dict] = {
    "DatasetDriftDetected__cloudevents__go-sdk-test-tarAsSystemEventDatasetId.json":
        {**DEMO_WS_DRIFT, "target_dataset_id": None},  # typo key is unknown: target unknown
    "DatasetDriftDetected__cloudevents__spec-example-negative-offset.json": SPEC_DRIFT,
    "DatasetDriftDetected__cloudevents__spec-example-specVersion-camelcase.json":
        {**SPEC_DRIFT, "quirks": "specVersion"},
    "DatasetDriftDetected__cloudevents__typespec-example-extra-operationId-title.json": SPEC_DRIFT,
    "DatasetDriftDetected__eventgrid__sdk-track1-dotnet-driftDemoWS.json":
        {**DEMO_WS_DRIFT, "target_dataset_id": TARGET},
    "DatasetDriftDetected__eventgrid__sdk-track2-dotnet-java-go-tarAsSystemEventDatasetId.json":
        {**DEMO_WS_DRIFT, "target_dataset_id": None},
    # 17 significant digits: stored as the nearest double
    "DatasetDriftDetected__eventgrid__spec-example.json": SPEC_DRIFT,
    "ModelDeployed__cloudevents__go-sdk-test.json": JENNS_DEPLOY,
    "ModelDeployed__cloudevents__spec-example-specVersion-camelcase.json": {**SPEC_DEPLOY, "quirks": "specVersion"},
    "ModelDeployed__cloudevents__spec-example.json": SPEC_DEPLOY,
    "ModelDeployed__cloudevents__typespec-example-extra-operationId-title.json": SPEC_DEPLOY,
    "ModelDeployed__eventgrid__sdk-tests-jenns-canary.json": JENNS_DEPLOY,
    "ModelDeployed__eventgrid__spec-example.json": SPEC_DEPLOY,
    "ModelRegistered__cloudevents__azure-docs-array-batch.json": {**SPEC_MODEL, "batch_index": 0},
    # the second "source" is the subject; the first is the workspace
    "ModelRegistered__cloudevents__go-sdk-test-duplicate-source-no-subject.json":
        {**JENNS_MODEL, "quirks": "duplicate_source"},
    "ModelRegistered__cloudevents__spec-example.json": SPEC_MODEL,
    "ModelRegistered__cloudevents__typespec-example-extra-operationId-title.json": SPEC_MODEL,
    "ModelRegistered__eventgrid__azure-samples-nocode-sample-dat.json": {
        "table": "model_registrations", "model_name": "ncd-sklearn-model", "model_version": "1",
        "model_properties": "{}", "workspace_name": "test_ml_workspace", "data_version": "1",
    },
    "ModelRegistered__eventgrid__sdk-tests-jenns-canary.json": {**JENNS_MODEL, "data_version": "2"},
    "ModelRegistered__eventgrid__spec-example.json": SPEC_MODEL,
    "RunCompleted__cloudevents__go-sdk-test-mixedcase-RunTags.json": JENNS_RUN_COMPLETED,
    "RunCompleted__cloudevents__spec-example.json": SPEC_RUN_COMPLETED,
    "RunCompleted__cloudevents__typespec-example-extra-operationId-title.json": SPEC_RUN_COMPLETED,
    "RunCompleted__eventgrid__historical-doc-2020-pascalcase.json": {**SPEC_RUN_COMPLETED, "batch_index": 0},
    "RunCompleted__eventgrid__sdk-tests-jenns-canary-mixedcase-RunTags.json": JENNS_RUN_COMPLETED,
    "RunCompleted__eventgrid__spec-example.json": SPEC_RUN_COMPLETED,
    "RunStatusChanged__cloudevents__go-sdk-test-Running.json": JENNS_RUNNING,
    "RunStatusChanged__cloudevents__spec-example-lowercase-failed.json": SPEC_FAILED,
    "RunStatusChanged__cloudevents__spec-example-specVersion-camelcase.json": {**SPEC_FAILED, "quirks": "specVersion"},
    "RunStatusChanged__cloudevents__typespec-example-extra-operationId-title.json": SPEC_FAILED,
    "RunStatusChanged__data-only__azure-docs-pr59351-NotStarted.json": {"dead": "bare_data_object"},
    "RunStatusChanged__eventgrid__azure-docs-array-batch.json": SPEC_FAILED,
    # labelled RunCompleted but carries RunStatus=failed: the status wins
    "RunStatusChanged__eventgrid__historical-doc-2020-pascalcase-mislabeled-eventType-RunCompleted.json": {
        **SPEC_FAILED, "event_type": "Microsoft.MachineLearningServices.RunCompleted",
        "quirks": "run_completed_with_status",
    },
    "RunStatusChanged__eventgrid__sdk-tests-jenns-canary-Running.json": JENNS_RUNNING,
    "RunStatusChanged__eventgrid__spec-example-lowercase-failed.json": SPEC_FAILED,
    # no time and, from a file, no enqueued time either
    "RunStatusChanged__functions-python-serialization__pipeline-observability-readme-pipelinerun-completed.json":
        {"dead": "missing_time"},
    "RunStatusChanged__functions-python-serialization__pipeline-observability-readme-steprun-completed.json":
        {"dead": "missing_time"},
}

RAW_COLUMNS = {"quirks", "data_version", "batch_index", "time_source"}


def test_every_corpus_file_has_an_expectation():
    assert sorted(p.name for p in corpus_files()) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_file_outcome(name: str):
    expected = dict(EXPECTED[name])
    result, tables = decode_to_rows((CORPUS / name).read_bytes())
    if "dead" in expected:
        assert result.events == [] and result.ignored == []
        assert [d.reason for d in result.dead_letters] == [expected["dead"]]
        assert tables["dead_letters"][0]["payload"] == (CORPUS / name).read_bytes()
        assert tables["dead_letters"][0]["source_file"] == "test.ndjson"
        return
    assert result.dead_letters == [] and result.ignored == []
    assert len(result.events) == 1
    table = expected.pop("table")
    rows = tables[table]
    assert len(rows) == expected.pop("rows", 1)
    if "models" in expected:
        assert [(r["model_name"], r["model_version"]) for r in rows] == expected.pop("models")
    raw = tables["raw_events"][0]
    expected.setdefault("quirks", None)
    for column, value in expected.items():
        actual = raw[column] if column in RAW_COLUMNS else rows[0][column]
        assert actual == value, f"{column}: {actual!r} != {value!r}"
    assert raw["time_source"] == "event"


@pytest.mark.parametrize("kind", ["pipelinerun", "steprun"])
def test_functions_serialization_uses_enqueued_time_from_the_hub(kind: str):
    name = next(n for n in EXPECTED if n.endswith(f"{kind}-completed.json"))
    origin = Origin("eventhub", hub="ns/eh1", partition_id="3", offset="4096", sequence_number=17,
                    enqueued_us=us("2024-05-01T12:00:00Z"))
    result, tables = decode_to_rows((CORPUS / name).read_bytes(), origin)
    assert result.dead_letters == []
    run, raw = tables["run_events"][0], tables["raw_events"][0]
    assert run["status"] == "Completed"
    assert run["event_time"] == us("2024-05-01T12:00:00Z")
    assert raw["time_source"] == "enqueued" and raw["quirks"] == "time_from_enqueued"
    assert raw["schema_kind"] == "functions" and run["workspace_name"] == "sample-ws"
    assert (raw["partition_id"], raw["partition_offset"], raw["sequence_number"]) == ("3", "4096", 17)
    if kind == "steprun":
        assert run["run_type"] == "azureml.StepRun"
        assert run["parent_run_id"] == "096a41be-218d-4bdb-857d-be3222caa891"
        assert run["step_type"] == "PythonScriptStep"
        assert run["compute_target_type"] == "AmlCompute"
    else:
        assert run["run_type"] == "azureml.PipelineRun" and run["parent_run_id"] is None
        # JSON-in-strings kept as-is
        assert '"azureml.parameters":"{}"' in run["run_properties"]
