"""`amlwh backfill files` into a warehouse in Blob Storage (Azurite on this machine) against
the same backfill into a local folder, in the same run; then the headline queries on the
warehouses it built: local, remote with a warm cache, remote with a cold one.

    python bench/bench_remote_backfill.py [--events 200000] [--rounds 3] [--query-repeats 3]

1. The input is bench_backfill.py's NDJSON file at `--events` lines (bench/backfill_input.py:
   written once into bench/out/, reused while its name and size match), read once into the
   page cache.
2. Each round backfills it, as fresh `amlwh backfill files FILE --no-compact --quiet`
   processes under bench/launch.py, settled before each (bench.common.settle()):
   - into a fresh local folder, and into a fresh `abfs://bench/round-<r>` prefix of one
     Azurite (AMLWH_WAREHOUSE__CONNECTION_STRING its connection string, a fresh
     AMLWH_WAREHOUSE__CACHE_DIR per round, AMLWH_WAREHOUSE__WORK_DIR under the work folder);
   - then the same file again into the same warehouse: every event is a duplicate, nothing
     is written, and the key index reads the stored keys of every (table, date) it touches:
     from the local files, or, remote, listed and read through the round's cache (since
     90f821e a writer keeps what it uploads there, so this downloads nothing; before, it
     downloaded every stored raw_events file of those dates: the "downloaded" column).
   The order alternates by round (local first, then remote first, ...) for both the first
   and the second backfill. `--no-compact` for both: the backfill itself is measured, and
   a remote backfill skipped compaction until it was built (d36574d).
3. On the last round's two warehouses, the headline queries as fresh `amlwh query`
   processes, alternating: local, remote with a warm cache (filled by an uncounted warm-up
   round) and remote with a new empty cache each time (bench_remote_query.compare_queries).

Prints each run, then medians, ranges and the ratio remote / local of the medians: wall
time, bodies per second, the backfill process tree's CPU (launcher: os.wait4) and Azurite's
CPU over the same run (from /proc); "CPU ratio" is remote's amlwh + Azurite CPU over local's
amlwh CPU, steadier than wall time when other work loads the machine. Azurite shares the 2 cores with the backfill, so the
remote figures pay its CPU as well as the transfer; against Azure the transfer is the
network's. Benchmarks print figures; they never assert. The machine is shared: quote medians.
"""

from __future__ import annotations

import argparse
import compileall
import os
import shutil
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import backfill_input  # noqa: E402
from bench.bench_remote_query import compare_queries, folder_bytes, query_table  # noqa: E402
from bench.common import (  # noqa: E402
    ROOT,
    child_env,
    loadavg,
    machine,
    md_table,
    median,
    print_preamble,
    settle,
    versions,
    work_dir,
)
from bench.launch import launcher_argv, read_report  # noqa: E402

CONTAINER = "bench"
QUERIES = (
    "select * from run_durations",
    "select * from failure_rates",
    "select status, count(*) from runs group by 1",
    "select count(*) from run_status_history",
    "select count(*) from monitor_metrics",
)
KINDS = ("first", "again")  # a backfill into a fresh warehouse; the same file again (all duplicates)
KIND_LABEL = {"first": "backfill into a fresh warehouse", "again": "the same file again (all duplicates)"}


def commit() -> str:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                          text=True, check=False).stdout.strip() or "?"


def tree_cpu_s(pid: int) -> float:
    """User + system CPU of a live process and its live descendants (and what they reaped), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        try:
            with open(f"/proc/{current}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            total += sum(int(x) for x in fields[11:15]) / tick  # utime stime cutime cstime
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as fh:
                    todo += [int(c) for c in fh.read().split()]
        except (OSError, ValueError, IndexError):
            pass
    return total


def blobs(connection_string: str, prefix: str) -> tuple[int, int]:
    """(blobs, bytes) under `prefix` of the container."""
    from azure.storage.blob import ContainerClient

    with ContainerClient.from_connection_string(connection_string, CONTAINER) as client:
        listed = [b.size for b in client.list_blobs(name_starts_with=prefix + "/")]
    return len(listed), sum(listed)


def parquet_files(root: Path) -> tuple[int, int]:
    """(files, bytes) of a local warehouse's Parquet files."""
    files = list(root.rglob("*.parquet"))
    return len(files), sum(p.stat().st_size for p in files)


def summary_line(stdout: str, label: str) -> int | None:
    """A figure from the backfill's summary (`  events written:      1,234`)."""
    for line in stdout.splitlines():
        if line.strip().startswith(label + ":"):
            try:
                return int(line.split(":", 1)[1].strip().replace(",", ""))
            except ValueError:
                return None
    return None


def backfill(path: Path, env: dict, report: Path, azurite_pid: int) -> dict:
    """One settled `amlwh backfill files PATH --no-compact --quiet` under the launcher: its
    report, plus Azurite's CPU over the run and the summary's written / duplicate counts."""
    settle()
    cmd = [sys.executable, "-m", "consumer", "backfill", "files", str(path), "--no-compact", "--quiet"]
    report.unlink(missing_ok=True)
    azurite_before, start = tree_cpu_s(azurite_pid), time.time()
    done = subprocess.run(launcher_argv(report, cmd), env=env, cwd=ROOT, capture_output=True, check=False)
    result = read_report(report, start)
    result["azurite_cpu_s"] = tree_cpu_s(azurite_pid) - azurite_before
    if result["rc"] != 0:
        raise SystemExit(f"{' '.join(cmd)[-120:]} failed ({result['rc']}): {done.stderr.decode()[-1500:]}")
    out = done.stdout.decode(errors="replace")
    result["written"] = summary_line(out, "events written")
    result["duplicates"] = summary_line(out, "duplicates skipped")
    return result


def spread(values: list[float], fmt: str = "{:.2f}") -> str:
    return f"{fmt.format(min(values))}–{fmt.format(max(values))}"


def backfill_table(runs: dict[tuple[str, str], list[dict]], lines: int) -> list[str]:
    """Median wall, range, bodies/s, ratio to local; CPU of amlwh and Azurite, and the ratio
    of their sum to local's CPU (steadier than wall time when others load the machine)."""
    rows = []
    for kind in KINDS:
        floor = median(r["wall_s"] for r in runs[(kind, "local")])
        cpu_floor = median(r["cpu_s"] for r in runs[(kind, "local")])
        for where in ("local", "remote"):
            rs = runs[(kind, where)]
            wall = median(r["wall_s"] for r in rs)
            azurite = f"{median(r['azurite_cpu_s'] for r in rs):.1f} s" if where == "remote" else ""
            cpu_all = median(r["cpu_s"] + r["azurite_cpu_s"] for r in rs)
            fetched = (f"{median(r['downloaded'] for r in rs) / 1e6:,.1f} MB"
                       if where == "remote" and kind == "again" else "")
            rows.append([KIND_LABEL[kind] if where == "local" else "", where, f"{wall:.2f} s",
                         f"{spread([r['wall_s'] for r in rs])} s", f"{lines / wall:,.0f}", f"{wall / floor:.2f}",
                         f"{median(r['cpu_s'] for r in rs):.1f} s", azurite, f"{cpu_all / cpu_floor:.2f}", fetched])
    return md_table(["backfill", "warehouse", "median", "range", "bodies/s", "ratio to local", "amlwh CPU",
                     "Azurite CPU", "CPU ratio", "downloaded"], rows, left=2)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=200_000, help="NDJSON lines (bodies) in the input file")
    p.add_argument("--rounds", type=int, default=3, help="backfill rounds (each: local and remote, twice)")
    p.add_argument("--query-repeats", type=int, default=3, help="measured rounds of the queries (0: none)")
    p.add_argument("--payload-bytes", type=int, default=1620, help="as bench_backfill.py")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--days", type=int, default=30, help="event-time span of the whole file")
    p.add_argument("--regenerate", action="store_true", help="rewrite the NDJSON even if cached")
    p.add_argument("--keep", action="store_true", help="keep the work folder (warehouses, Azurite) under bench/out/")
    a = p.parse_args(argv)
    from devstack.azurite import Azurite

    for package in ("consumer", "transforms", "sql"):  # as installed: no process compiles sources
        compileall.compile_dir(ROOT / package, quiet=1)
    print_preamble(machine(), versions(["duckdb", "pyarrow", "azure-storage-blob"], azurite=True))
    began = time.perf_counter()
    path, meta, cached = backfill_input.dataset(a.events, a.seed, a.payload_bytes, a.days, a.regenerate)
    lines = meta["lines"]
    print(f"date: {date.today()}  commit: {commit()}")
    print(f"input: {path.relative_to(ROOT)} ({'cached' if cached else 'generated'}; {lines:,} lines, "
          f"{meta['bytes'] / 2**20:,.0f} MiB)")
    backfill_input.warm_page_cache(path)
    work = work_dir("remote-backfill-")
    runs: dict[tuple[str, str], list[dict]] = {(k, w): [] for k in KINDS for w in ("local", "remote")}
    try:
        with Azurite(location=str(work / "azurite")) as azurite:
            azurite.create_container(CONTAINER)
            pid = azurite._proc.pid
            report = work / "launch.json"
            envs = {}
            for r in range(1, a.rounds + 1):
                envs[r] = {
                    "local": child_env(AMLWH_WAREHOUSE__PATH=str(work / f"local-{r}")),
                    "remote": child_env(AMLWH_WAREHOUSE__PATH=f"abfs://{CONTAINER}/round-{r}",
                                        AMLWH_WAREHOUSE__CONNECTION_STRING=azurite.connection_string,
                                        AMLWH_WAREHOUSE__CACHE_DIR=str(work / f"cache-{r}"),
                                        AMLWH_WAREHOUSE__WORK_DIR=str(work / "stage")),
                }
                order = ("local", "remote") if r % 2 else ("remote", "local")
                for kind in KINDS:
                    for where in order:
                        cached_before = folder_bytes(work / f"cache-{r}") if (work / f"cache-{r}").exists() else 0
                        result = backfill(path, envs[r][where], report, pid)
                        if where == "local":
                            files, size = parquet_files(work / f"local-{r}")
                        else:
                            files, size = blobs(azurite.connection_string, f"round-{r}")
                            # what the run added to the read cache: on a rerun, what it downloaded (it
                            # writes nothing); a first run's uploads are linked in too (since 90f821e)
                            result["downloaded"] = folder_bytes(work / f"cache-{r}") - cached_before
                        runs[(kind, where)].append(result)
                        print(f"  round {r} {kind:<5} {where:<6} {result['wall_s']:6.2f} s  "
                              f"{lines / result['wall_s']:>8,.0f} bodies/s  CPU {result['cpu_s']:5.1f} s  "
                              f"Azurite CPU {result['azurite_cpu_s']:5.1f} s  written {result['written']:,}  "
                              f"duplicates {result['duplicates']:,}  -> {files} files, {size / 1e6:,.1f} MB"
                              + (f", read cache +{result['downloaded'] / 1e6:,.1f} MB" if where == "remote" else ""),
                              flush=True)
                if r < a.rounds and not a.keep:  # the last round's warehouses are queried below
                    shutil.rmtree(work / f"local-{r}", ignore_errors=True)
            print(f"load avg after the backfills: {loadavg()}")
            print()
            print(f"Backfill of {lines:,} bodies ({meta['bytes'] / 2**20:,.0f} MiB), `--no-compact`, "
                  f"median of {a.rounds} alternating round(s):")
            print("\n".join(backfill_table(runs, lines)))
            if a.query_repeats > 0:
                last = a.rounds
                local = envs[last]["local"]
                remote = dict(envs[last]["remote"], AMLWH_WAREHOUSE__CACHE_DIR=str(work / "query-warm"))
                walls, downloaded = compare_queries(QUERIES, local, remote, work, a.query_repeats)
                print()
                print(f"Queries on round {last}'s warehouses, median of {a.query_repeats} alternating round(s):")
                print("\n".join(query_table(QUERIES, walls, downloaded)))
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(f"load avg at end: {loadavg()}  (whole run {time.perf_counter() - began:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
