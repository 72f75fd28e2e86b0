"""`amlwh query` on a warehouse in Blob Storage (Azurite on this machine) against the same
warehouse on local disk, with a warm cache and with a cold one, side by side.

    python bench/bench_remote_query.py [--warehouse PATH] [--repeats 5]

The warehouse (default: the 1M-event views-bench warehouse, bench/out/views-n1000000, if it
exists; else 50,000 synthetic events backfilled here) is uploaded once to an Azurite
container under a prefix, as `azcopy sync` would. Each round then runs, as fresh processes
under bench/launch.py, alternating, for each query:
- `amlwh query` on the local folder;
- `amlwh query` on `abfs://<container>/<prefix>` with a warm cache (filled before the
  rounds: the query lists the container and downloads nothing);
- the same with a cold cache (a new empty cache folder each time: it downloads every file
  the statement needs).
Medians, the spread, each one's ratio to the local query, and what a cold query downloads.
Azurite runs on the same 2 cores as the queries, so a cold query here pays Azurite's CPU
as well as the transfer; against Azure the transfer is the network's.
"""

from __future__ import annotations

import argparse
import compileall
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import OUT, ROOT, child_env, machine, md_table, median, print_preamble, versions  # noqa: E402
from bench.launch import run_launched  # noqa: E402

PREFIX = "warehouses/bench"
QUERIES = ("select count(*) from models", "select count(*) from runs", "select * from failure_rates")


def timed(cmd: list[str], env: dict, report: Path) -> float:
    return run_launched(cmd, env, report)["wall_s"]


def small_warehouse(folder: Path) -> Path:
    """50,000 synthetic events backfilled and compacted: a warehouse with a view state."""
    from devstack.synth import generate

    events = folder / "events.ndjson"
    events.write_bytes(b"\n".join(generate(10_000).bodies) + b"\n")
    root = folder / "warehouse"
    subprocess.run([sys.executable, "-m", "consumer", "backfill", "files", str(events), "-q"],
                   env=child_env(AMLWH_WAREHOUSE__PATH=str(root)), cwd=ROOT, check=True, capture_output=True)
    return root


def upload(root: Path, connection_string: str, container: str) -> tuple[int, int]:
    """Every file of the warehouse under PREFIX; (files, bytes)."""
    from concurrent.futures import ThreadPoolExecutor

    from azure.storage.blob import ContainerClient

    files = [p for p in root.rglob("*") if p.is_file()]
    with ContainerClient.from_connection_string(connection_string, container) as client:
        client.create_container()

        def put(path: Path) -> None:
            with open(path, "rb") as data:
                client.upload_blob(f"{PREFIX}/{path.relative_to(root).as_posix()}", data, max_concurrency=2)

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(put, files))
    return len(files), sum(p.stat().st_size for p in files)


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


MODES = ("local", "remote, warm cache", "remote, cold cache")


def compare_queries(queries, local: dict, remote: dict, work: Path,
                    repeats: int) -> tuple[dict[tuple[str, str], list[float]], dict[str, list[int]]]:
    """Each query as fresh `amlwh query` processes, alternating in each round: with `local`'s
    environment, with `remote`'s (its AMLWH_WAREHOUSE__CACHE_DIR, filled by an uncounted
    warm-up round that also warms the page cache) and with `remote`'s on a new empty cache
    folder under `work`. Wall times by (query, MODES entry), and the bytes each cold query
    downloaded."""
    report = work / "launch.json"
    amlwh = [sys.executable, "-m", "consumer", "query"]
    walls: dict[tuple[str, str], list[float]] = {}
    downloaded: dict[str, list[int]] = {sql: [] for sql in queries}
    for sql in queries:  # warm the page cache, and fill the warm cache
        timed(amlwh + [sql], local, report)
        timed(amlwh + [sql], remote, report)
    for n in range(repeats):
        for sql in queries:
            walls.setdefault((sql, "local"), []).append(timed(amlwh + [sql], local, report))
            walls.setdefault((sql, "remote, warm cache"), []).append(timed(amlwh + [sql], remote, report))
            cold = work / f"cold-{n}"
            env = dict(remote, AMLWH_WAREHOUSE__CACHE_DIR=str(cold))
            walls.setdefault((sql, "remote, cold cache"), []).append(timed(amlwh + [sql], env, report))
            downloaded[sql].append(folder_bytes(cold))
            shutil.rmtree(cold)
    return walls, downloaded


def query_table(queries, walls: dict[tuple[str, str], list[float]], downloaded: dict[str, list[int]]) -> list[str]:
    """compare_queries' figures as a markdown table: median, range, ratio to local, downloaded."""
    rows = []
    for sql in queries:
        floor = median(walls[(sql, "local")])
        for mode in MODES:
            w = walls[(sql, mode)]
            fetched = f"{median(downloaded[sql]) / 1e6:,.1f} MB" if mode.endswith("cold cache") else ""
            rows.append([f"`{sql}`" if mode == "local" else "", mode, f"{median(w):.3f} s",
                         f"{min(w):.3f}–{max(w):.3f} s", f"{median(w) / floor:.2f}", fetched])
    return md_table(["query", "warehouse", "median", "range", "ratio to local", "downloaded"], rows, left=2)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--warehouse", type=Path, default=None)
    p.add_argument("--repeats", type=int, default=5)
    a = p.parse_args(argv)
    from devstack.azurite import Azurite

    for package in ("consumer", "transforms", "sql"):
        compileall.compile_dir(ROOT / package, quiet=1)
    print_preamble(machine(), versions(["duckdb", "azure-storage-blob"], azurite=True))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    with tempfile.TemporaryDirectory(dir=OUT if OUT.exists() else None) as tmp, Azurite(location=f"{tmp}/azurite") as azurite:
        tmp = Path(tmp)
        warehouse = a.warehouse or (OUT / "views-n1000000")
        if not warehouse.exists():
            warehouse = small_warehouse(tmp)
        started = time.perf_counter()
        files, size = upload(warehouse, azurite.connection_string, "bench")
        print(f"date: {date.today()}  commit: {commit}  warehouse: {warehouse} ({files} files, "
              f"{size / 1e6:,.0f} MB, uploaded in {time.perf_counter() - started:.1f} s)")
        local = child_env(AMLWH_WAREHOUSE__PATH=str(warehouse))
        remote = child_env(AMLWH_WAREHOUSE__PATH=f"abfs://bench/{PREFIX}",
                           AMLWH_WAREHOUSE__CONNECTION_STRING=azurite.connection_string,
                           AMLWH_WAREHOUSE__CACHE_DIR=str(tmp / "warm"))
        walls, downloaded = compare_queries(QUERIES, local, remote, tmp, a.repeats)
    print("\n".join(query_table(QUERIES, walls, downloaded)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
