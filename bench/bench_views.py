"""Headline views at scale: `amlwh query` against a stock DuckDB scan-and-group of the same
run_events Parquet, both as fresh processes, side by side in one run.

    python bench/bench_views.py [--events 10000000] [--repeats 5] [--reuse] [--delta 20000]

1. The bench_backfill NDJSON file of `--events` bodies (bench/backfill_input.py, cached) is
   backfilled with `--no-compact` into bench/out/views-n<N>/ (kept; `--reuse` skips this
   step when that warehouse exists): the file count is what a load leaves.
2. `amlwh compact` (timed, peak RSS): the first one folds all history into the view state
   and merges every partition. File counts before and after.
3. Each headline query (README "Views at scale") through `amlwh query`, and the baseline,
   alternating, `--repeats` times each, as fresh processes under bench/launch.py (peak RSS
   from wait4). Medians.
4. With `--delta N`: N more bodies are backfilled without
   compaction, so the queries also run with N events not folded in yet (what a reader sees
   between two automatic compactions), then the queries again. They are new runs in the
   last half day of the data, as live traffic is.

The baseline is `SELECT status, count(*) FROM read_parquet('<wh>/run_events/*/*.parquet',
hive_partitioning = true) GROUP BY 1` from a fresh `python -c "import duckdb; ..."`:
the floor a stock reader pays to scan the runs' events once.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.backfill_input import dataset  # noqa: E402
from bench.common import OUT, ROOT, child_env, machine, md_table, median, print_preamble, settle, versions  # noqa: E402
from bench.launch import run_launched  # noqa: E402

AMLWH = [sys.executable, "-m", "consumer"]


def queries(run_id: str) -> dict[str, str]:
    return {
        "run_durations": "SELECT * FROM run_durations",
        "failure_rates": "SELECT * FROM failure_rates",
        "runs by status": "SELECT status, count(*) FROM runs GROUP BY 1",
        "run_status_history count": "SELECT count(*) FROM run_status_history",
        "monitor_metrics count": "SELECT count(*) FROM monitor_metrics",
        "one run": f"SELECT * FROM runs WHERE run_id = '{run_id}'",
        "one run's history": f"SELECT * FROM run_status_history WHERE run_id = '{run_id}' ORDER BY entry_number",
    }


def baseline_cmd(warehouse: Path) -> list[str]:
    glob = f"{warehouse}/run_events/*/*.parquet"
    sql = f"SELECT status, count(*) FROM read_parquet('{glob}', hive_partitioning = true) GROUP BY 1"
    return [sys.executable, "-c", f"import duckdb; duckdb.sql({sql!r}).fetchall()"]


def launched(cmd: list[str], env: dict, work: Path) -> dict:
    """Run `cmd` to its end under the launcher; its report (wall_s, maxrss_kib, rc)."""
    return run_launched(cmd, env, work / "launch.json")


def recent_events(path: Path, events: int) -> Path:
    """About `events` bodies of new runs in the last half day of the dataset's 30 days, as a
    live worker would commit between two compactions."""
    from devstack.synth import generate

    from bench.backfill_input import START_US

    # a new seed each run: with --reuse, runs already stored would be skipped as duplicates
    stream = generate(max(1, events // 6), seed=time.time_ns() % 1_000_003, start_us=START_US + int(29.5 * 86400e6),
                      span_s=12 * 3600, payload_bytes=1620)
    path.write_bytes(b"\n".join(stream.bodies[:events]) + b"\n")
    return path


def file_count(warehouse: Path) -> int:
    return sum(1 for p in warehouse.glob("*/event_date=*/*.parquet"))


def measure(warehouse: Path, env: dict, work: Path, repeats: int, run_id: str) -> list[list[str]]:
    rows = []
    base = [launched(baseline_cmd(warehouse), env, work) for _ in range(1)]  # warm the page cache
    for label, sql in queries(run_id).items():
        ours, base = [], []
        for _ in range(repeats):  # alternating: the same noise for both
            ours.append(launched(AMLWH + ["query", sql, "--format", "csv"], env, work))
            base.append(launched(baseline_cmd(warehouse), env, work))
        t_ours, t_base = median(r["wall_s"] for r in ours), median(r["wall_s"] for r in base)
        rows.append([label, f"{t_ours:.2f} s", f"{max(r['maxrss_kib'] for r in ours) / 1024:.0f} MB",
                     f"{t_base:.2f} s", f"{t_ours / t_base:.2f}"])
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=10_000_000)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--reuse", action="store_true", help="keep the warehouse of an earlier run")
    p.add_argument("--delta", type=int, default=20_000, help="events not folded in for the second round (0: none)")
    a = p.parse_args(argv)

    print_preamble(machine(), versions(["duckdb", "pyarrow"]))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    print(f"date: {date.today()}  commit: {commit}  events: {a.events:,}")
    source, meta, cached = dataset(a.events, 7, 1620, 30, False)
    warehouse = OUT / f"views-n{a.events}"
    work = OUT / f"views-work-{a.events}"
    work.mkdir(parents=True, exist_ok=True)
    env = child_env(AMLWH_WAREHOUSE__PATH=str(warehouse))
    if not (a.reuse and warehouse.exists()):
        shutil.rmtree(warehouse, ignore_errors=True)
        settle()
        load = launched(AMLWH + ["backfill", "files", str(source), "--no-compact", "-q"], env, work)
        print(f"backfill --no-compact: {load['wall_s']:.1f} s, {file_count(warehouse):,} files")
        settle()
        before = file_count(warehouse)
        # no reader is open: replaced files can go at once, so the count after is final
        compacted = launched(AMLWH + ["compact", "-q"], {**env, "AMLWH_COMPACTION__GRACE_S": "0"}, work)
        print(f"compact (fold all history + merge): {compacted['wall_s']:.1f} s, peak RSS "
              f"{compacted['maxrss_kib'] / 1024:.0f} MB, files {before:,} -> {file_count(warehouse):,}")
    run_id = subprocess.run(AMLWH + ["query", "SELECT run_id FROM runs ORDER BY run_id LIMIT 1 OFFSET 1000",
                                     "--format", "csv"], env=env, cwd=ROOT, capture_output=True,
                            text=True).stdout.splitlines()[1]
    header = ["query", "amlwh query", "RSS", "stock DuckDB scan", "ratio"]
    print(f"\nall events folded in ({file_count(warehouse):,} files):")
    print("\n".join(md_table(header, measure(warehouse, env, work, a.repeats, run_id))))
    if a.delta:
        extra = recent_events(work / "delta.ndjson", a.delta)
        launched(AMLWH + ["backfill", "files", str(extra), "--no-compact", "-q"], env, work)
        print(f"\nwith {a.delta:,} events not folded in yet:")
        print("\n".join(md_table(header, measure(warehouse, env, work, a.repeats, run_id))))
        launched(AMLWH + ["compact", "-q"], {**env, "AMLWH_COMPACTION__GRACE_S": "0"}, work)  # for --reuse
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
