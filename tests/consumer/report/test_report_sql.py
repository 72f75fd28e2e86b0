"""The report's SQL (sql/report) against in-memory DuckDB: hand-made rows in tables shaped
like the views it reads, and the values each chart would draw."""

from __future__ import annotations

from datetime import date, datetime, timezone

import duckdb
import pytest

from consumer.report.build import report_files, report_sql, run_report_queries
from consumer.report.thresholds import DriftThresholds
from consumer.storage.schema import view_sql

RUNS = """CREATE TABLE runs (run_id VARCHAR, experiment_name VARCHAR, status VARCHAR,
    created_at TIMESTAMPTZ, ended_at TIMESTAMPTZ, duration_s DOUBLE)"""
REGISTRATIONS = "CREATE TABLE model_registrations (event_id VARCHAR, event_time TIMESTAMPTZ)"
DEPLOYMENTS = """CREATE TABLE deployments (workspace VARCHAR, event_id VARCHAR, model_ordinal SMALLINT,
    deployed_at TIMESTAMPTZ)"""
DRIFT = """CREATE TABLE drift (monitor_id VARCHAR, monitor_name VARCHAR, coefficient DOUBLE,
    window_start TIMESTAMPTZ, window_end TIMESTAMPTZ, detected_at TIMESTAMPTZ)"""


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(timezone.utc)


@pytest.fixture
def con():
    con = duckdb.connect(":memory:")
    # Not UTC on purpose: days are UTC days whatever the session's time zone.
    con.execute("SET TimeZone = 'Asia/Tokyo'")
    for ddl in (RUNS, REGISTRATIONS, DEPLOYMENTS, DRIFT):
        con.execute(ddl)
    # the real failure_rates view, over the hand-made runs
    con.execute(dict(view_sql())["21_failure_rates.sql"])
    yield con
    con.close()


def add_runs(con, *rows) -> None:
    con.executemany("INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?)",
                    [(r[0], r[1], r[2], ts(r[3]), ts(r[4]) if r[4] else None, r[5]) for r in rows])


def tables(con, since=None, thresholds=DriftThresholds()):
    found = run_report_queries(con, since, thresholds)
    return {chart: [dict(zip(t.columns, row)) for row in t.rows] for chart, t in found.items()}


def test_every_chart_has_one_query_file():
    assert list(report_sql()) == ["run_durations", "failure_rates", "runs_by_status",
                                  "model_activity", "drift"]
    assert report_files()["drift"] == "sql/report/50_drift.sql"


def test_duration_percentiles_per_experiment_and_utc_day_of_ended_at(con):
    add_runs(con,
             ("a1", "train", "Completed", "2025-03-01T08:00:00Z", "2025-03-01T09:00:00Z", 60.0),
             ("a2", "train", "Failed", "2025-03-01T08:00:00Z", "2025-03-01T10:00:00Z", 120.0),
             ("a3", "train", "Completed", "2025-03-01T08:00:00Z", "2025-03-01T11:00:00Z", 180.0),
             ("a4", "train", "Canceled", "2025-03-01T08:00:00Z", "2025-03-01T23:59:59Z", 240.0),
             # ends at 00:00 UTC on the 2nd (09:00 in Tokyo): a run of the 2nd
             ("b1", "train", "Completed", "2025-03-01T22:00:00Z", "2025-03-02T00:00:00Z", 7200.0),
             ("c1", None, "Completed", "2025-03-01T08:00:00Z", "2025-03-01T09:00:00Z", 30.0),
             ("d1", "train", "Running", "2025-03-01T08:00:00Z", None, None),  # not finished
             ("e1", "train", "Completed", "2025-03-01T08:00:00Z", "2025-03-01T09:00:00Z", None))  # no start
    got = tables(con)["run_durations"]
    assert got == [
        {"experiment": "(no experiment)", "day": date(2025, 3, 1), "runs": 1, "p50_s": 30.0, "p95_s": 30.0},
        {"experiment": "train", "day": date(2025, 3, 1), "runs": 4, "p50_s": 150.0,
         "p95_s": pytest.approx(231.0)},  # interpolated: 180 + 0.85 * 60
        {"experiment": "train", "day": date(2025, 3, 2), "runs": 1, "p50_s": 7200.0, "p95_s": 7200.0},
    ]
    assert tables(con, since=date(2025, 3, 2))["run_durations"] == [got[2]]


def test_failure_rates_come_from_the_view_and_since_cuts_at_a_utc_day(con):
    add_runs(con,
             ("a1", "train", "Completed", "2025-03-01T08:00:00Z", "2025-03-01T09:00:00Z", 60.0),
             ("a2", "train", "Failed", "2025-03-01T08:00:00Z", "2025-03-01T10:00:00Z", 60.0),
             ("a3", "train", "Canceled", "2025-03-01T08:00:00Z", "2025-03-01T23:59:59.999999Z", 60.0),
             ("a4", "train", "Failed", "2025-03-01T08:00:00Z", "2025-03-02T00:00:00Z", 60.0),
             ("s1", "score", "Running", "2025-03-02T08:00:00Z", None, None))
    got = tables(con)["failure_rates"]
    assert [(r["experiment"], r["day"], r["finished"], r["failed"], r["canceled"], r["completed"],
             r["failure_rate"]) for r in got] == [
        ("train", date(2025, 3, 1), 3, 1, 1, 1, pytest.approx(1 / 3)),
        ("train", date(2025, 3, 2), 1, 1, 0, 0, 1.0)]
    assert [r["day"] for r in tables(con, since=date(2025, 3, 2))["failure_rates"]] == [date(2025, 3, 2)]
    assert tables(con, since=date(2025, 3, 3))["failure_rates"] == []


def test_runs_by_status_count_runs_per_utc_day_created_and_current_status(con):
    add_runs(con,
             ("a1", "train", "Completed", "2025-03-01T00:00:00Z", "2025-03-01T09:00:00Z", 60.0),
             ("a2", "train", "Completed", "2025-03-01T23:00:00Z", "2025-03-02T01:00:00Z", 60.0),
             ("a3", "score", "Failed", "2025-03-01T12:00:00Z", "2025-03-01T13:00:00Z", 60.0),
             ("a4", "score", "Running", "2025-03-02T00:30:00Z", None, None),
             ("a5", None, "Queued", "2025-02-28T23:59:59Z", None, None))
    got = [(r["day"], r["status"], r["runs"]) for r in tables(con)["runs_by_status"]]
    assert got == [(date(2025, 2, 28), "Queued", 1), (date(2025, 3, 1), "Completed", 2),
                   (date(2025, 3, 1), "Failed", 1), (date(2025, 3, 2), "Running", 1)]
    since = [(r["day"], r["status"]) for r in tables(con, since=date(2025, 3, 1))["runs_by_status"]]
    assert since == [(date(2025, 3, 1), "Completed"), (date(2025, 3, 1), "Failed"),
                     (date(2025, 3, 2), "Running")]


def test_model_activity_counts_each_event_once_per_day(con):
    con.executemany("INSERT INTO model_registrations VALUES (?, ?)", [
        ("r1", ts("2025-03-01T10:00:00Z")), ("r2", ts("2025-03-01T23:59:59Z")),
        ("r3", ts("2025-03-03T00:00:00Z"))])
    con.executemany("INSERT INTO deployments VALUES (?, ?, ?, ?)", [
        ("ws1", "d1", 0, ts("2025-03-01T11:00:00Z")),
        ("ws1", "d1", 1, ts("2025-03-01T11:00:00Z")),  # the same event naming a second model
        ("ws2", "d1", 0, ts("2025-03-01T11:00:00Z")),  # the same event id in another workspace
        ("ws1", "d2", 0, ts("2025-03-02T05:00:00Z")),
        (None, "d3", None, ts("2025-03-02T06:00:00Z"))])  # no models named, no workspace
    got = [(r["day"], r["registrations"], r["deployments"]) for r in tables(con)["model_activity"]]
    assert got == [(date(2025, 3, 1), 2, 2), (date(2025, 3, 2), 0, 2), (date(2025, 3, 3), 1, 0)]
    since = [r["day"] for r in tables(con, since=date(2025, 3, 2))["model_activity"]]
    assert since == [date(2025, 3, 2), date(2025, 3, 3)]


def test_drift_points_per_monitor_at_window_end_with_thresholds(con):
    con.executemany("INSERT INTO drift VALUES (?, ?, ?, ?, ?, ?)", [
        ("id-1", "churn", 0.25, ts("2025-02-28T00:00:00Z"), ts("2025-03-01T00:00:00Z"),
         ts("2025-03-02T06:00:00Z")),  # detected a day after its window: drawn at the window end
        ("id-2", "churn", 0.15, ts("2025-03-01T00:00:00Z"), ts("2025-03-02T00:00:00Z"),
         ts("2025-03-02T07:00:00Z")),
        ("id-3", None, 0.9, None, None, ts("2025-03-02T08:00:00Z")),  # no name, no window
        ("id-4", "fraud", None, None, None, ts("2025-03-02T09:00:00Z"))])  # no coefficient: no point
    thresholds = DriftThresholds(0.2, {"id-3": 0.95})
    got = [(r["monitor"], r["measured_at"], r["coefficient"], r["threshold"], r["above_threshold"])
           for r in tables(con, thresholds=thresholds)["drift"]]
    assert got == [("churn", ts("2025-03-01T00:00:00Z"), 0.25, 0.2, True),
                   ("churn", ts("2025-03-02T00:00:00Z"), 0.15, 0.2, False),
                   ("id-3", ts("2025-03-02T08:00:00Z"), 0.9, 0.95, False)]
    since = [r["monitor_id"] for r in tables(con, since=date(2025, 3, 2))["drift"]]
    assert since == ["id-2", "id-3"]


def test_empty_views_give_empty_tables_with_their_columns(con):
    found = run_report_queries(con, None, DriftThresholds())
    assert {chart: len(t.rows) for chart, t in found.items()} == dict.fromkeys(report_sql(), 0)
    assert found["drift"].columns[:5] == ("monitor", "measured_at", "coefficient", "threshold",
                                          "above_threshold")
