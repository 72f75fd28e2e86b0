"""Files backfill through the real CLI into real Parquet, queried through the views."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from tests.support.cli import HAND_CHECKED_WS as WS
from tests.support.cli import amlwh
from tests.support.events import CORPUS, HAND_CHECKED, REPO

pytestmark = pytest.mark.integration


def query(env, sql: str) -> list[dict]:
    return json.loads(amlwh("query", sql, "--format", "json", env=env).stdout)


def config_accepting_prod_only(tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(f'[filter]\nworkspaces = ["{WS.upper()}"]\n')
    return path


def test_hand_checked_stream_gives_the_expected_views(tmp_path, warehouse_env):
    config = config_accepting_prod_only(tmp_path)
    out = amlwh("--config", str(config), "backfill", "files", str(HAND_CHECKED), env=warehouse_env).stdout
    assert "events written:      15" in out
    assert "duplicates skipped:  1" in out
    assert "ignored:             3" in out
    assert "dead-lettered:       4" in out

    runs = {r["run_id"]: r for r in query(warehouse_env, "SELECT * FROM runs")}
    assert {k: (v["status"], v["duration_s"], v["queue_s"]) for k, v in runs.items()} == {
        "run-a": ("Completed", 600.0, 60.0),
        "run-b": ("Failed", 1800.0, 0.0),     # its Failed arrived hours late, last in the file
        "run-c": ("Canceled", 60.0, 300.0),   # "Cancelled" on the wire
        "run-d": ("Running", None, 0.0),
        "run-e": ("Completed", 1200.0, 0.0),  # +02:00 offset start, Z end
    }
    assert runs["run-a"]["created_at"] == "2025-03-01T10:00:00.000000Z"
    assert runs["run-a"]["ended_at"] == "2025-03-01T10:11:00.000000Z"
    assert runs["run-e"]["started_at"] == "2025-03-02T08:00:00.000000Z"
    assert runs["run-d"]["ended_at"] is None

    durations = query(warehouse_env, "SELECT * FROM run_durations ORDER BY experiment_name")
    assert [(d["experiment_name"], d["run_type"], d["runs"], d["p50_s"], pytest.approx(d["p95_s"]),
             d["max_s"], d["mean_s"]) for d in durations] == [
        ("score", None, 1, 60.0, 60.0, 60.0, 60.0),
        ("train", "automl", 3, 1200.0, 1740.0, 1800.0, 1200.0)]  # p95 of 600/1200/1800
    rates = query(warehouse_env, "SELECT * FROM failure_rates ORDER BY day, experiment_name")
    assert [(r["experiment_name"], r["day"], r["finished"], r["failed"], r["canceled"], r["failure_rate"])
            for r in rates] == [("score", "2025-03-01", 1, 0, 1, 0.0), ("train", "2025-03-01", 2, 1, 0, 0.5),
                                ("train", "2025-03-02", 1, 0, 0, 0.0)]

    dead = query(warehouse_env, "SELECT reason, source_line, batch_index FROM dead_letters ORDER BY 2, 3")
    assert [(d["reason"], d["source_line"], d["batch_index"]) for d in dead] == [
        ("invalid_json", 4, None), ("missing_field", 11, None),
        ("not_an_event", 12, 0), ("not_an_event", 12, 1)]
    ignored = query(warehouse_env, "SELECT reason, event_id FROM ignored_events ORDER BY event_id")
    assert [(i["reason"], i["event_id"]) for i in ignored] == [
        ("unknown_event_type", "blob-1"), ("foreign_workspace", "f-1"), ("foreign_workspace", "f-2")]

    assert query(warehouse_env, "SELECT model_name, model_version FROM models") == [
        {"model_name": "churn", "model_version": "7"}]
    assert [(d["model_name"], d["model_version"]) for d in query(
        warehouse_env, "SELECT * FROM deployments ORDER BY model_ordinal")] == [("churn", "7"), ("churn", "6")]
    [drift] = query(warehouse_env, "SELECT * FROM drift")
    assert (drift["coefficient"], drift["window_start"]) == (0.42, "2025-03-01T00:00:00.000000Z")
    metrics = query(warehouse_env, "SELECT metric, sum(value) AS n FROM monitor_metrics GROUP BY 1 ORDER BY 1")
    assert {m["metric"]: m["n"] for m in metrics} == {
        "Cancelled Runs": 1, "Completed Runs": 2, "Failed Runs": 1, "Model Deploy Succeeded": 1,
        "Model Register Succeeded": 1, "Not Started Runs": 1, "Queued Runs": 1, "Started Runs": 5}


def test_reingesting_changes_no_view(tmp_path, warehouse_env):
    config = str(config_accepting_prod_only(tmp_path))
    amlwh("--config", config, "backfill", "files", str(HAND_CHECKED), env=warehouse_env)
    views = ["runs", "run_status_history", "run_durations", "failure_rates", "models", "deployments",
             "drift", "dead_letters", "ignored_events", "monitor_metrics"]
    before = {v: query(warehouse_env, f"SELECT * EXCLUDE (ingested_at) FROM {v} ORDER BY ALL")
              if v in ("dead_letters", "ignored_events") else query(warehouse_env, f"SELECT * FROM {v} ORDER BY ALL")
              for v in views}
    # the same file again, and a gzip copy of it under another name (file-level overlap)
    gz = tmp_path / "again.ndjson.gz"
    gz.write_bytes(gzip.compress(HAND_CHECKED.read_bytes()))
    out = amlwh("--config", config, "backfill", "files", str(HAND_CHECKED), env=warehouse_env).stdout
    assert "events written:      0" in out and "duplicates skipped:  16" in out
    amlwh("--config", config, "backfill", "files", str(gz), env=warehouse_env)
    after = {v: query(warehouse_env, f"SELECT * EXCLUDE (ingested_at) FROM {v} ORDER BY ALL")
             if v in ("dead_letters", "ignored_events") else query(warehouse_env, f"SELECT * FROM {v} ORDER BY ALL")
             for v in views}
    for view in views:
        if view == "dead_letters":  # the gzip copy is another file: its poison lines are new rows
            assert len(after[view]) == 2 * len(before[view])
            continue
        assert after[view] == before[view], view


def test_warehouse_is_readable_by_stock_tools(tmp_path, warehouse_env):
    import duckdb

    amlwh("backfill", "files", str(HAND_CHECKED), env=warehouse_env)
    root = Path(warehouse_env["AMLWH_WAREHOUSE__PATH"])
    dataset = ds.dataset(root / "run_events", format="parquet", partitioning="hive")
    table = dataset.to_table()
    assert table.num_rows == 14 and "event_date" in table.column_names  # filter off: + 2 foreign
    con = duckdb.connect()
    count = con.execute(
        f"SELECT count(*) FROM read_parquet('{root}/raw_events/*/*.parquet', hive_partitioning=true)"
    ).fetchone()[0]
    assert count == 17  # 15 events from this workspace + the 2 from the foreign one (filter off)
    assert sorted(p.name.split("=")[1] for p in (root / "raw_events").iterdir()) == ["2025-03-01", "2025-03-02"]
    assert not list(root.rglob(".*.tmp"))


def test_whole_json_files_and_directories_are_backfilled(tmp_path, warehouse_env):
    folder = tmp_path / "in"
    shutil.copytree(CORPUS, folder)
    out = amlwh("backfill", "files", str(folder), env=warehouse_env).stdout
    assert "dead-lettered:       3" in out  # the bare data object + 2 without any time
    # The official examples reuse one event id across types; (source, id) identifies an
    # event, so only the first of each is stored: 7 distinct ids among the 34 events.
    assert "events written:      7" in out and "duplicates skipped:  27" in out
    assert query(warehouse_env, "SELECT count(*) AS n FROM store.raw_events") == [{"n": 7}]


def test_missing_and_unknown_paths_fail_with_a_message(tmp_path, warehouse_env):
    proc = amlwh("backfill", "files", str(tmp_path / "nope.ndjson"), env=warehouse_env, check=False)
    assert proc.returncode == 2 and "no such file or directory" in proc.stderr
    assert "Traceback" not in proc.stderr
    odd = tmp_path / "events.csv"
    odd.write_text("a,b\n")
    proc = amlwh("backfill", "files", str(odd), env=warehouse_env, check=False)
    assert proc.returncode == 2 and "unknown file kind" in proc.stderr


def test_unwritable_warehouse_stops_with_a_clear_error(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the warehouse should be")
    proc = amlwh("backfill", "files", str(HAND_CHECKED),
                 env={"AMLWH_WAREHOUSE__PATH": str(blocker / "wh")}, check=False)
    assert proc.returncode == 1
    assert "cannot write to the warehouse" in proc.stderr and "Traceback" not in proc.stderr


def test_without_the_native_scanner_the_backfill_says_so_and_stores_the_same_rows(tmp_path):
    """An install without a C compiler has no transforms._linescan: the backfill warns
    and decodes run lines in Python, and the warehouse holds exactly the same rows."""
    hidden = tmp_path / "hide_native"
    hidden.mkdir()  # sitecustomize runs in the CLI process and any decode process it starts
    (hidden / "sitecustomize.py").write_text("import sys\nsys.modules['transforms._linescan'] = None\n")
    sample = REPO / "samples" / "demo-stream.ndjson.gz"
    tables = {"raw_events": "* EXCLUDE (ingested_at)", "run_events": "* EXCLUDE (ingested_at)",
              "dead_letters": "* EXCLUDE (ingested_at)", "runs": "*"}
    stored = {}
    for name, extra in (("native", {}), ("python", {"PYTHONPATH": f"{hidden}:{REPO}"})):
        env = {"AMLWH_WAREHOUSE__PATH": str(tmp_path / name), **extra}
        proc = amlwh("backfill", "files", str(sample), "--quiet", env=env)
        assert ("native line scanner" in proc.stderr and "not built" in proc.stderr) == (name == "python")
        stored[name] = {table: query(env, f"SELECT {columns} FROM {table} ORDER BY ALL")
                        for table, columns in tables.items()}
    assert stored["native"]["run_events"]  # the sample has run events for the scanner to read
    assert stored["native"] == stored["python"]
