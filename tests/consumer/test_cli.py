"""The CLI as an operator meets it: help, read-only queries, formats, config errors."""

from __future__ import annotations

import csv
import io
import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support.cli import amlwh
from tests.support.events import HAND_CHECKED

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("command", [[], ["run"], ["backfill"], ["backfill", "files"], ["publish"], ["query"], ["views"]])
def test_every_command_has_help(command):
    proc = amlwh(*command, "--help")
    assert proc.stdout.startswith("usage: amlwh")


@pytest.mark.parametrize("sql", [
    "COPY (SELECT 1) TO '/tmp/x.csv'",
    "CREATE TABLE t AS SELECT 1",
    "INSERT INTO store.raw_events SELECT * FROM store.raw_events",
    "ATTACH '/tmp/other.duckdb' AS other",
    "SELECT 1; DROP VIEW runs",
    "PRAGMA enable_profiling",
])
def test_statements_that_would_write_are_refused(sql, warehouse_env):
    proc = amlwh("query", sql, env=warehouse_env, check=False)
    assert proc.returncode == 2
    assert "read-only" in proc.stderr and "Traceback" not in proc.stderr


def test_query_formats(warehouse_env):
    amlwh("backfill", "files", str(HAND_CHECKED), env=warehouse_env)
    sql = "SELECT run_id, status, ended_at, duration_s FROM runs WHERE run_id IN ('run-a', 'run-d') ORDER BY 1"
    as_json = json.loads(amlwh("query", sql, "--format", "json", env=warehouse_env).stdout)
    assert as_json == [
        {"run_id": "run-a", "status": "Completed", "ended_at": "2025-03-01T10:11:00.000000Z", "duration_s": 600.0},
        {"run_id": "run-d", "status": "Running", "ended_at": None, "duration_s": None}]
    as_csv = list(csv.reader(io.StringIO(amlwh("query", sql, "--format", "csv", env=warehouse_env).stdout)))
    assert as_csv == [["run_id", "status", "ended_at", "duration_s"],
                      ["run-a", "Completed", "2025-03-01T10:11:00.000000Z", "600.0"],
                      ["run-d", "Running", "", ""]]
    table = amlwh("query", sql, env=warehouse_env).stdout
    assert "run-a" in table and "(2 rows)" in table


def test_query_on_an_empty_warehouse_works(warehouse_env):
    out = json.loads(amlwh("query", "SELECT count(*) AS n FROM runs", "--format", "json", env=warehouse_env).stdout)
    assert out == [{"n": 0}]


def test_bad_sql_is_reported_without_traceback(warehouse_env):
    proc = amlwh("query", "SELECT nope FROM runs", env=warehouse_env, check=False)
    assert proc.returncode == 1 and "query failed" in proc.stderr and "nope" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_views_lists_public_contract(warehouse_env):
    out = amlwh("views", env=warehouse_env).stdout
    for view in ("runs", "run_status_history", "run_durations", "failure_rates", "models",
                 "deployments", "drift", "dead_letters", "monitor_metrics"):
        assert f"\n{view}\n" in f"\n{out}"
    assert "duration_s" in out and "store." not in out
    assert "store.raw_events" in amlwh("views", "--all", env=warehouse_env).stdout


@pytest.mark.parametrize("text, fragments", [
    ("[warehouse\npath = 1", ["is not valid TOML"]),
    ("[backfill]\nbatch_rows = -5\n", ["[backfill] batch_rows", "AMLWH_BACKFILL__BATCH_ROWS"]),
    ("[filter]\nevent_types = ['Microsoft.Storage.BlobCreated']\n", ["[filter] event_types", "unknown event type"]),
    ("[warehouse]\npaht = 'x'\n", ["[warehouse] paht", "Extra inputs"]),
])
def test_config_mistakes_are_explained(tmp_path, text, fragments):
    config = tmp_path / "config.toml"
    config.write_text(text)
    commands = [["backfill", "files", str(tmp_path / "absent.ndjson")]]
    if text.startswith("[warehouse"):  # query and views read [warehouse] only
        commands.append(["views"])
    for command in commands:
        proc = amlwh("--config", str(config), *command, check=False)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert "configuration error" in proc.stderr
        for fragment in fragments:
            assert fragment in proc.stderr


def test_missing_explicit_config_file_is_an_error(tmp_path):
    proc = amlwh("--config", str(tmp_path / "absent.toml"), "views", check=False)
    assert proc.returncode == 2 and "does not exist" in proc.stderr


SECRET = "SUPERSECRET"  # the SAS key in every connection string below
CHECKPOINT_SECRET = "Q0hFQ0tQT0lOVFNFQ1JFVA=="  # an account key (base64, as the blob SDK wants)


def test_env_overrides_config_file_and_secrets_never_print(tmp_path, local_hub):
    config = tmp_path / "config.toml"
    config.write_text(f'[warehouse]\npath = "{tmp_path / "from-file"}"\n')
    checkpoint = {"AMLWH_CHECKPOINT__CONNECTION_STRING": (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
        f"AccountKey={CHECKPOINT_SECRET};BlobEndpoint=http://127.0.0.1:1/devstoreaccount1;")}
    env = {"AMLWH_WAREHOUSE__PATH": str(tmp_path / "from-env"),
           "AMLWH_EVENTHUB__CONNECTION_STRING": f"Endpoint=sb://x/;SharedAccessKeyName=k;SharedAccessKey={SECRET};"
                                                "EntityPath=eh1", **checkpoint}
    # Runs that hold the secrets, all with debug logging (the SDKs' too), side by side: the two
    # `run`s spend their time in the SDK's connect retries.
    runs = {
        "backfill": (["-v", "--config", str(config), "backfill", "files", str(HAND_CHECKED)], env, 0,
                     "backfill done"),
        "unreachable hub": (["-v", "--config", str(config), "run", "--stop-when-idle", "1"],
                            dict(env, AMLWH_EVENTHUB__CONNECTION_STRING=(
                                f"Endpoint=sb://127.0.0.1:1/;SharedAccessKeyName=k;SharedAccessKey={SECRET};"
                                "UseDevelopmentEmulator=true;EntityPath=eh1")), 1, "cannot reach the hub"),
        "rejected key": (["-v", "--config", str(config), "run", "--stop-when-idle", "1"],
                         dict(env, AMLWH_EVENTHUB__CONNECTION_STRING=local_hub.connection_string("eh1", key=SECRET)),
                         1, "the hub refused the credentials"),
    }
    with ThreadPoolExecutor(len(runs)) as pool:
        done = {name: pool.submit(amlwh, *args, env=run_env, check=False)
                for name, (args, run_env, _, _) in runs.items()}
    for name, (_, _, code, says) in runs.items():
        proc = done[name].result()
        output = proc.stdout + proc.stderr
        assert proc.returncode == code and says in output, f"{name}: exit {proc.returncode}\n{output[-3000:]}"
        if name != "backfill":  # (the backfill has nothing to say at debug level)
            assert " DEBUG " in proc.stderr, f"{name}: no debug logging\n{output[-3000:]}"
        assert SECRET not in output and CHECKPOINT_SECRET not in output, f"{name} printed a secret"
    assert (tmp_path / "from-env" / "raw_events").is_dir() and not (tmp_path / "from-file").exists()

    import os

    from consumer.config import load_settings

    old = dict(os.environ)
    os.environ.update(env)
    try:
        settings = load_settings(config)
    finally:
        os.environ.clear()
        os.environ.update(old)
    for secret in (SECRET, CHECKPOINT_SECRET):
        assert secret not in repr(settings) and secret not in str(settings.model_dump())
    assert settings.eventhub.connection_string.get_secret_value().endswith(f"SharedAccessKey={SECRET};EntityPath=eh1")


@pytest.mark.parametrize("env, says", [
    ({}, "AMLWH_EVENTHUB__CONNECTION_STRING"),
    ({"AMLWH_EVENTHUB__CONNECTION_STRING": "Endpoint=sb://127.0.0.1:1/;SharedAccessKeyName=k;"
      "SharedAccessKey=c2VjcmV0;EntityPath=eh1"}, "AMLWH_CHECKPOINT__CONNECTION_STRING"),
    ({"AMLWH_EVENTHUB__STARTING_POSITION": "yesterday"}, "[eventhub] starting_position"),
])
def test_worker_configuration_mistakes_are_explained(env, says, tmp_path):
    proc = amlwh("run", env={"AMLWH_WAREHOUSE__PATH": str(tmp_path / "wh"), **env}, check=False)
    assert proc.returncode == 2, proc.stderr
    assert says in proc.stderr and "Traceback" not in proc.stderr
    assert "c2VjcmV0" not in proc.stderr


def test_compact_merges_reports_and_leaves_the_views(tmp_path):
    warehouse = tmp_path / "wh"
    env = {"AMLWH_WAREHOUSE__PATH": str(warehouse), "AMLWH_COMPACTION__GRACE_S": "0"}
    for half in (0, 1):  # two loads: two files a date
        lines = HAND_CHECKED.read_bytes().splitlines()[half::2]
        (tmp_path / f"half{half}.ndjson").write_bytes(b"\n".join(lines) + b"\n")
        amlwh("backfill", "files", str(tmp_path / f"half{half}.ndjson"), "--no-compact", "-q", env=env)
    before = amlwh("query", "SELECT * FROM runs ORDER BY run_id", "--format", "csv", env=env).stdout
    files = lambda: sorted(warehouse.glob("run_events/*/*.parquet"))  # noqa: E731
    assert len(files()) > len({p.parent for p in files()})

    out = amlwh("compact", env=env).stdout
    assert out.startswith("compacted ") and "view state: generation 1" in out
    assert len(files()) == len({p.parent for p in files()})
    assert amlwh("query", "SELECT * FROM runs ORDER BY run_id", "--format", "csv", env=env).stdout == before
    assert "view state: unchanged" in amlwh("compact", env=env).stdout  # nothing new to fold


@pytest.mark.parametrize("args, message", [
    (("compact", "--table", "runz"), "unknown table(s) ['runz']"),
    (("compact", "--before", "yesterday"), "'yesterday' is not a date"),
])
def test_compact_refuses_a_wrong_table_or_date(tmp_path, args, message):
    proc = amlwh(*args, env={"AMLWH_WAREHOUSE__PATH": str(tmp_path)}, check=False)
    assert proc.returncode == 2 and message in proc.stderr
