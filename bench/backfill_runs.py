"""The two tools bench_backfill times, each run once in a fresh process under bench/launch.py.

A. `amlwh backfill files FILE --quiet` as a user runs it, as `python -m consumer` with
   cwd = PYTHONPATH = this checkout (so ./config.toml applies and a worktree measures its own
   code; AMLWH_WAREHOUSE__PATH = a fresh empty directory per run).
B. DuckDB in a fresh Python process: DUCKDB_QUERY into a fresh on-disk database file, then
   CHECKPOINT.

The launcher reports wall time, the peak RSS of the tool's largest process (os.wait4) and CPU
time; TreeMemorySampler adds the peak PSS of all the tool's processes together.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import ROOT, child_env
from bench.launch import run_measured

# The baseline. DuckDB's auto-detection (`read_json(FILE, format='newline_delimited',
# ignore_errors=true)`) resolves this file to one column `json JSON` anyway, because
# the lines mix objects and one-element arrays (records=true refuses the arrays).
# Naming that column skips the sampling pass and keeps the shape independent of the
# sample. Every line is parsed and validated and becomes one row; the two lines that
# are not JSON become NULL rows (ignore_errors), so the row count equals the line count.
DUCKDB_QUERY = (
    "CREATE TABLE raw AS SELECT * FROM read_json({path}, format='newline_delimited', "
    "records=false, columns={{'json': 'JSON'}}, ignore_errors=true)"
)
DUCKDB_CHILD = r"""
import json, sys, time
import duckdb
path, db, query, threads = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
t0 = time.perf_counter()
con = duckdb.connect(db)
if threads:
    con.execute(f"SET threads = {int(threads)}")
con.execute(query.format(path="'" + path.replace("'", "''") + "'"))
con.execute("CHECKPOINT")
seconds = time.perf_counter() - t0
rows, nulls = con.execute("SELECT count(*), count(*) - count(json) FROM raw").fetchone()
con.close()
print(json.dumps({"rows": rows, "null_rows": nulls, "seconds": seconds}))
"""


@dataclass
class Measured:
    tool: str
    repeat: int
    wall_s: float
    peak_rss_mb: float  # the largest single process of the tool (wait4 ru_maxrss)
    tree_pss_mb: float  # the tool and its processes together (sampled PSS)
    cpu_s: float
    rc: int
    stdout: str
    stderr: str
    facts: dict = field(default_factory=dict)


def run_child(tool: str, repeat: int, cmd: list[str], env: dict, cwd: Path, logdir: Path) -> Measured:
    """Run `cmd` under bench.launch: wall time, peak RSS and CPU of the tool's process."""
    out_path, err_path = logdir / f"{tool}-{repeat}.out", logdir / f"{tool}-{repeat}.err"
    r = run_measured(cmd, logdir / f"{tool}-{repeat}.rusage.json", out_path, err_path, env, cwd)
    return Measured(
        tool, repeat, r["wall_s"], r["maxrss_kib"] / 1024,  # Linux: ru_maxrss is KiB
        r["tree_pss_peak_kib"] / 1024, r["cpu_s"], r["rc"],
        out_path.read_text(errors="replace"), err_path.read_text(errors="replace"),
    )


def rusage_floor(logdir: Path) -> float:
    """Peak RSS the launcher reports for a process that does nothing (`true`)."""
    true = shutil.which("true") or "/bin/true"
    return run_child("floor", 0, [true], dict(os.environ), ROOT, logdir).peak_rss_mb


def amlwh_command() -> list[str]:
    """`amlwh` as `python -m consumer`: with cwd and PYTHONPATH = this checkout (amlwh_env), a
    worktree measures its own code, not whatever the venv's console script was installed from."""
    return [sys.executable, "-m", "consumer"]


def amlwh_env(warehouse: Path) -> dict:
    return child_env(AMLWH_WAREHOUSE__PATH=str(warehouse), PYTHONPATH=str(ROOT))


_SUMMARY = {
    "files": r"backfill done: (\d+) file",
    "bodies": r"file\(s\), ([\d,]+) bodies",
    "inner_s": r"bodies in ([\d.]+)s",
    "events_written": r"events written:\s+([\d,]+)",
    "duplicates": r"duplicates skipped:\s+([\d,]+)",
    "ignored": r"ignored:\s+([\d,]+)",
    "dead_letters": r"dead-lettered:\s+([\d,]+)",
}


def parse_amlwh(stdout: str) -> dict:
    facts = {}
    for key, pattern in _SUMMARY.items():
        m = re.search(pattern, stdout)
        if m:
            facts[key] = float(m.group(1)) if key == "inner_s" else int(m.group(1).replace(",", ""))
    return facts


def run_amlwh(path: Path, repeat: int, work: Path, batch_rows: int | None, keep: bool) -> Measured:
    warehouse = work / f"warehouse-{repeat}"
    cmd = amlwh_command() + ["backfill", "files", str(path), "--quiet"]
    if batch_rows:
        cmd += ["--batch-rows", str(batch_rows)]
    m = run_child("amlwh", repeat, cmd, amlwh_env(warehouse), ROOT, work)
    m.facts = parse_amlwh(m.stdout)
    m.facts["parquet_files"] = sum(1 for _ in warehouse.rglob("*.parquet")) if warehouse.exists() else 0
    m.facts["disk_mb"] = du_mb(warehouse)
    if not keep:
        shutil.rmtree(warehouse, ignore_errors=True)
    return m


def run_duckdb(path: Path, repeat: int, work: Path, threads: int | None, keep: bool) -> Measured:
    db = work / f"duckdb-{repeat}.duckdb"
    cmd = [sys.executable, "-c", DUCKDB_CHILD, str(path), str(db), DUCKDB_QUERY, str(threads or "")]
    m = run_child("duckdb", repeat, cmd, dict(os.environ), ROOT, work)
    try:
        m.facts = json.loads(m.stdout.strip().splitlines()[-1])
        m.facts["inner_s"] = m.facts.pop("seconds")
    except (ValueError, IndexError):
        m.facts = {}
    m.facts["disk_mb"] = du_mb(db) + du_mb(db.with_name(db.name + ".wal"))
    if not keep:
        for p in (db, db.with_name(db.name + ".wal")):
            p.unlink(missing_ok=True)
    return m


def du_mb(path: Path) -> float:
    if not path.exists():
        return 0.0
    if path.is_file():
        return path.stat().st_size / 2**20
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20
