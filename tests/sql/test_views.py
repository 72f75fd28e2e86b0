"""The views in sql/views/*.sql, tested against in-memory DuckDB."""

from __future__ import annotations

from datetime import date

import pytest

from tests.support.events import RC, WS, run_event
from tests.support.rows import memory_views, rows_for
from transforms.timeparse import datetime_from_us, parse_instant_us


def at(text: str):
    return datetime_from_us(parse_instant_us(text))


def one(con, sql: str):
    rows = con.execute(sql).fetchall()
    assert len(rows) == 1, rows
    return rows[0]


def test_runs_lifecycle_columns():
    con = memory_views(rows_for([
        run_event("r1", "Completed", "2025-01-01T10:05:00Z"),
        run_event("r1", "NotStarted", "2025-01-01T10:00:00Z"),
        run_event("r1", "Running", "2025-01-01T10:01:30Z"),
        run_event("r1", "Queued", "2025-01-01T10:00:10Z"),
        # RunCompleted a moment later must not move ended_at
        run_event("r1", None, "2025-01-01T10:05:00.2Z", event_type=RC),
    ]))
    status, created, started, ended, duration, queue, events = one(
        con, "SELECT status, created_at, started_at, ended_at, duration_s, queue_s, events FROM runs")
    assert status == "Completed"
    assert created == at("2025-01-01T10:00:00Z")
    assert started == at("2025-01-01T10:01:30Z")
    assert ended == at("2025-01-01T10:05:00Z")
    assert duration == pytest.approx(210.0)
    assert queue == pytest.approx(90.0)
    assert events == 5


def test_runs_status_is_latest_by_event_time_not_arrival():
    con = memory_views(rows_for([
        run_event("r1", "Failed", "2025-01-01T10:05:00Z"),
        run_event("r1", "Running", "2025-01-01T10:01:00Z"),  # arrives after, happened before
    ]))
    assert one(con, "SELECT status, ended_at FROM runs") == ("Failed", at("2025-01-01T10:05:00Z"))


def test_runs_terminal_status_wins_a_tie_of_event_times():
    con = memory_views(rows_for([
        run_event("r1", "Canceled", "2025-01-01T10:05:00Z"),
        run_event("r1", "Running", "2025-01-01T10:05:00Z"),
    ]))
    status, ended, duration = one(con, "SELECT status, ended_at, duration_s FROM runs")
    assert status == "Canceled" and ended == at("2025-01-01T10:05:00Z") and duration == 0.0


def test_runs_non_terminal_and_unstarted_runs_have_null_end_or_duration():
    con = memory_views(rows_for([
        run_event("running", "Running", "2025-01-01T10:00:00Z"),
        run_event("never-started", "Queued", "2025-01-01T09:00:00Z"),
        run_event("never-started", "Failed", "2025-01-01T09:10:00Z"),
    ]))
    rows = dict((r[0], r[1:]) for r in con.execute(
        "SELECT run_id, status, ended_at, duration_s, started_at, queue_s FROM runs").fetchall())
    assert rows["running"] == ("Running", None, None, at("2025-01-01T10:00:00Z"), 0.0)
    assert rows["never-started"] == ("Failed", at("2025-01-01T09:10:00Z"), None, None, None)


def test_runs_one_row_per_workspace_and_run_with_latest_known_attributes():
    other = WS.replace("prod-ws", "dev-ws")
    con = memory_views(rows_for([
        run_event("r1", "Running", "2025-01-01T10:00:00Z", run_type="azureml.StepRun",
                  tags={"azureml.pipelinerunid": "p-9"},
                  props={"stepType": "PythonScriptStep", "computeTargetType": "AmlCompute"}),
        run_event("r1", "Completed", "2025-01-01T10:01:00Z", run_type=None),
        run_event("r1", "Running", "2025-01-01T11:00:00Z", workspace=other),
    ]))
    rows = con.execute(
        "SELECT workspace_name, run_type, parent_run_id, step_type, compute_target_type, status "
        "FROM runs ORDER BY workspace_name").fetchall()
    assert rows == [
        ("dev-ws", None, None, None, None, "Running"),
        ("prod-ws", "azureml.StepRun", "p-9", "PythonScriptStep", "AmlCompute", "Completed"),
    ]


def test_run_status_history_collapses_repeats_and_measures_time_in_previous():
    con = memory_views(rows_for([
        run_event("r1", "Queued", "2025-01-01T10:00:00Z"),
        run_event("r1", "Running", "2025-01-01T10:00:30Z"),
        run_event("r1", "Completed", "2025-01-01T10:02:30Z"),
        run_event("r1", None, "2025-01-01T10:02:31Z", event_type=RC),
    ]))
    rows = con.execute(
        "SELECT entry_number, status, previous_status, seconds_in_previous "
        "FROM run_status_history ORDER BY entry_number").fetchall()
    assert rows == [(1, "Queued", None, None), (2, "Running", "Queued", 30.0),
                    (3, "Completed", "Running", 120.0)]


def test_run_durations_quantiles_over_finished_runs_only():
    bodies = []
    for i, seconds in enumerate([10, 20, 30, 40]):
        bodies += [run_event(f"r{i}", "Running", "2025-01-01T10:00:00Z"),
                   run_event(f"r{i}", "Completed" if i % 2 else "Failed", f"2025-01-01T10:00:{seconds}Z")]
    bodies += [run_event("still-running", "Running", "2025-01-01T10:00:00Z")]
    con = memory_views(rows_for(bodies))
    runs, p50, p95, max_s, mean_s = one(
        con, "SELECT runs, p50_s, p95_s, max_s, mean_s FROM run_durations")
    assert runs == 4
    assert p50 == pytest.approx(25.0) and p95 == pytest.approx(38.5)
    assert max_s == 40.0 and mean_s == pytest.approx(25.0)


def test_failure_rates_per_utc_day_of_end():
    con = memory_views(rows_for([
        run_event("a", "Failed", "2025-01-01T23:30:00-02:00"),   # 2025-01-02 01:30 UTC
        run_event("b", "Completed", "2025-01-02T05:00:00Z"),
        run_event("c", "Canceled", "2025-01-02T06:00:00Z"),
        run_event("d", "Completed", "2025-01-01T12:00:00Z"),
        run_event("e", "Running", "2025-01-02T12:00:00Z"),
    ]))
    rows = con.execute(
        "SELECT day, finished, failed, canceled, failure_rate FROM failure_rates ORDER BY day").fetchall()
    assert rows == [(date(2025, 1, 1), 1, 0, 0, 0.0), (date(2025, 1, 2), 3, 1, 1, pytest.approx(1 / 3))]


def test_monitor_metrics_names_dimensions_and_minutes():
    con = memory_views(rows_for([
        run_event("p", "Running", "2025-01-01T10:00:05Z", run_type="azureml.PipelineRun",
                  props={"azureml.pipelineid": "pub-1"}),
        run_event("s", "Running", "2025-01-01T10:00:50Z", run_type="azureml.StepRun",
                  props={"stepType": "PythonScriptStep", "computeTargetType": "AmlCompute"}),
        run_event("s", "Canceled", "2025-01-01T10:03:00Z", run_type="azureml.StepRun"),
        run_event("x", "Paused", "2025-01-01T10:00:00Z", run_type="automl"),
    ]))
    rows = con.execute(
        'SELECT metric, "time", value, "RunType", "ComputeType", "PipelineStepType", '
        '"PublishedPipelineId" FROM monitor_metrics ORDER BY "time", metric, "RunType"').fetchall()
    assert rows == [
        ("Started Runs", at("2025-01-01T10:00:00Z"), 1.0, "PipelineRun", None, None, "pub-1"),
        ("Started Runs", at("2025-01-01T10:00:00Z"), 1.0, "StepRun", "AmlCompute", "PythonScriptStep", None),
        ("Cancelled Runs", at("2025-01-01T10:03:00Z"), 1.0, "StepRun", "AmlCompute", "PythonScriptStep", None),
    ]  # Paused has no Azure Monitor metric


def test_models_deployments_and_drift_views():
    import orjson

    def event(event_type, data, event_id, time="2025-02-01T00:00:00Z"):
        return orjson.dumps({"topic": WS, "subject": "s", "id": event_id, "eventTime": time,
                             "eventType": "Microsoft.MachineLearningServices." + event_type, "data": data})

    con = memory_views(rows_for([
        event("ModelRegistered", {"modelName": "m", "modelVersion": 3, "modelTags": {"a": "1"}}, "1"),
        event("ModelDeployed", {"serviceName": "svc", "serviceComputeType": "AKS", "modelIds": "m:3,n:1"}, "2"),
        event("DatasetDriftDetected", {"dataDriftId": "d1", "dataDriftName": "mon", "runId": "r",
                                       "driftCoefficient": 1, "startTime": "2025-01-31T00:00:00Z",
                                       "endTime": "2025-02-01T00:00:00Z"}, "3"),
    ]))
    assert one(con, "SELECT model_name, model_version, tags FROM models") == ("m", "3", '{"a":"1"}')
    assert con.execute("SELECT service_name, compute_type, model_name, model_version FROM deployments "
                       "ORDER BY model_ordinal").fetchall() == [("svc", "AKS", "m", "3"), ("svc", "AKS", "n", "1")]
    assert one(con, "SELECT monitor_id, coefficient, window_start FROM drift") == (
        "d1", 1.0, at("2025-01-31T00:00:00Z"))
    metrics = con.execute("SELECT metric, value FROM monitor_metrics ORDER BY metric").fetchall()
    assert metrics == [("Model Deploy Succeeded", 1.0), ("Model Register Succeeded", 1.0)]


def test_views_read_each_event_once_when_stored_twice():
    bodies = [run_event("r1", "Running", "2025-01-01T10:00:00Z"),
              run_event("r1", "Failed", "2025-01-01T10:10:00Z")]
    once = memory_views(rows_for(bodies))
    twice = memory_views(rows_for(bodies + bodies[::-1]))
    for view in ("runs", "run_status_history", "failure_rates", "run_durations", "monitor_metrics"):
        assert once.execute(f"SELECT * FROM {view} ORDER BY ALL").fetchall() == \
            twice.execute(f"SELECT * FROM {view} ORDER BY ALL").fetchall(), view
    assert twice.execute("SELECT count(*) FROM store.run_events").fetchone() == (4,)
