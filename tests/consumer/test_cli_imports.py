"""`amlwh query` and `views` import what a query needs and nothing more: no settings
models, no pyarrow, no asyncio, no Azure SDK (each costs 0.05-0.3 s at every start).
What is imported is checked, not how long it takes: timings are measured (bench/NOTES.md)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from consumer.live.provisional import ProvisionalFiles
from consumer.storage.warehouse import ParquetWarehouse
from tests.support.cli import clean_env
from tests.support.events import REPO, run_event
from tests.support.rows import held_rows, rows_for

pytestmark = pytest.mark.integration

HEAVY = {"pydantic", "pydantic_core", "pydantic_settings", "pyarrow", "numpy", "pandas", "asyncio", "azure"}

# main() in a fresh interpreter; prints its exit code and the top-level packages it loaded
RUN_MAIN = """
import json, sys
from consumer.cli import main
code = main(sys.argv[1:])
sys.stdout.flush()
print(json.dumps({"code": code, "loaded": sorted({name.split(".")[0] for name in sys.modules})}))
"""


def run_main(*args: str, env: dict[str, str]) -> tuple[int, set[str], str, str]:
    proc = subprocess.run([sys.executable, "-c", RUN_MAIN, *args], capture_output=True, text=True,
                          env=clean_env(**env), cwd=REPO, timeout=120, check=False)
    *output, last = proc.stdout.rstrip("\n").split("\n")
    report = json.loads(last)
    return report["code"], set(report["loaded"]), "\n".join(output), proc.stderr


def loaded_by_duckdb() -> set[str]:
    proc = subprocess.run([sys.executable, "-c", "import sys, duckdb; print(' '.join(sys.modules))"],
                          capture_output=True, text=True, check=True, env=clean_env())
    return {name.split(".")[0] for name in proc.stdout.split()}


@pytest.fixture(scope="module")
def forbidden() -> set[str]:
    return HEAVY - loaded_by_duckdb()  # what DuckDB itself imports is not ours to avoid


@pytest.fixture
def live_warehouse(tmp_path):
    """Committed files and a live worker's provisional files, and a config file with every
    section, as an operator's config.toml has."""
    warehouse = tmp_path / "warehouse"
    sink = ParquetWarehouse(warehouse)
    sink.write(rows_for([run_event("r1", "Completed", "2025-01-01T00:00:00Z")]))
    sink.flush()
    files = ProvisionalFiles(warehouse, "zstd")
    files.publish(1, [held_rows([run_event("r2", "Running", "2025-01-01T00:01:00Z")])], now=1000.0)
    config = tmp_path / "config.toml"
    config.write_text((REPO / "config.toml").read_text())
    return {"AMLWH_WAREHOUSE__PATH": str(warehouse)}, config


def test_query_reads_committed_and_buffered_rows_without_heavy_imports(live_warehouse, forbidden):
    env, config = live_warehouse
    sql = ("SELECT run_id, status, (SELECT count(*) FROM raw_events WHERE provisional) AS buffered "
           "FROM runs ORDER BY run_id")
    code, loaded, out, err = run_main("--config", str(config), "query", sql, "--format", "json", env=env)
    assert code == 0, err
    assert json.loads(out) == [{"run_id": "r1", "status": "Completed", "buffered": 1},
                               {"run_id": "r2", "status": "Running", "buffered": 1}]
    assert loaded & forbidden == set()


def test_views_and_a_failed_query_import_nothing_heavy(live_warehouse, forbidden):
    env, _ = live_warehouse
    code, loaded, out, err = run_main("views", env=env)
    assert code == 0 and "\nruns\n" in f"\n{out}\n", err
    assert loaded & forbidden == set()
    code, loaded, _, err = run_main("query", "SELECT nope FROM runs", env=env)
    assert code == 1 and "query failed" in err  # explained without importing the Azure SDK
    assert loaded & forbidden == set()


def test_a_warehouse_mistake_is_worded_by_the_settings_models(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text('[warehouse]\npath = "x"\ncompression = "lz4"\n')
    code, loaded, _, err = run_main("--config", str(config), "query", "SELECT 1", env={})
    assert code == 2 and "[warehouse] compression" in err and "AMLWH_WAREHOUSE__COMPRESSION" in err
    assert "pydantic" in loaded  # the slow path, taken for mistakes only
