"""Part 4 of bench_worker: committed file count over an hour of live traffic, with and without
the worker's automatic compaction.

Two workers run side by side, each on its own 4-partition hub, checkpoint container and
warehouse, each fed by its own producer (bench/live_producer.py; the same seed, so the same
documents) at --files-rate events/s (default 50) for --files-seconds (default 3600):

    auto  the production defaults: `[compaction] auto = true`, every interval_s (300 s) the
          worker spawns `amlwh compact --min-files 8`, which merges each (table, event date)
          with >= 8 files into one and deletes the replaced files grace_s (60 s) later;
    off   AMLWH_COMPACTION__AUTO=false: one new file per table and event date at every flush.

(--files-sequential runs them one after the other instead, if the machine cannot keep up with
both.) Every --files-sample s (60) each warehouse is sampled: committed files of all tables
(`<table>/event_date=*/*.parquet`, retired files not yet deleted included: readers list them
too), files per table for today's event date (UTC), their bytes and the whole warehouse's bytes
(view state and retirement records included), and the compaction seen so far: `amlwh compact`
children of the worker (polled every second: rounds started), merged files (`part-*-c*.parquet`)
ever seen, and the newest view-state generation (`_state/manifest-*.json`; a round that found
new run events folds them in). The worker does not log its rounds. After the traffic both
workers are stopped (SIGTERM) and the warehouse sampled once more; then
`amlwh query "select count(*) from run_status_history"` is timed in a fresh process on each
(alternating auto / off, 3 each, median of the wall times, start-up included).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from bench.common import NAN, ROOT, child_env, is_nan, md_table, median
from bench.launch import Launched
from bench.worker_common import (LaunchedWorker, Stack, WorkerOptions, cpu_of, rss_tree, start_producer,
                                 start_worker)

TABLES = ("raw_events", "run_events", "model_registrations", "model_deployments", "drift_detections",
          "dead_letters", "ignored_events")
MERGED_RE = re.compile(r"^part-.*-c[0-9a-f]{12}\.parquet$")
QUERY = "select count(*) from run_status_history"
QUERY_REPEATS = 3


@dataclass
class Variant:
    """One worker, its hub, producer and warehouse, and what was sampled from them."""

    label: str  # "auto" or "off"
    env: dict[str, str]  # compaction settings on top of the production defaults
    warehouse: Path = Path()
    worker: LaunchedWorker | None = None
    producer: Launched | None = None
    report: Path = Path()
    merged: set[str] = field(default_factory=set)  # merged file names ever seen
    rounds: set[int] = field(default_factory=set)  # pids of `amlwh compact` children seen
    hub_name: str = ""
    hub_cs: str = ""
    samples: list[dict] = field(default_factory=list)  # every files_sample s under traffic
    end: dict = field(default_factory=dict)  # sampled when the traffic ended
    stopped: dict = field(default_factory=dict)  # sampled after the worker's SIGTERM shutdown
    ru: dict = field(default_factory=dict)  # the worker's launcher report
    cpu0: float = NAN
    t0: float = NAN
    cpu_cores: float = NAN  # the worker's, under traffic
    producer_cpu: float = NAN


def compact_children(pid: int | None) -> set[int]:
    """`amlwh compact` processes under the worker."""
    import psutil

    if pid is None:
        return set()
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return set()
    out = set()
    for child in children:
        try:
            if "compact" in child.cmdline():
                out.add(child.pid)
        except psutil.Error:
            pass
    return out


def sample(v: Variant, t: float) -> dict:
    """One look at the warehouse (and the worker's RSS)."""
    today = f"event_date={datetime.now(timezone.utc).date().isoformat()}"
    files = parquet_bytes = 0
    per_table: dict[str, int] = {}
    for table in TABLES:
        per_table[table] = 0
        for path in (v.warehouse / table).glob("*/*.parquet"):
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                continue  # deleted since listed
            files += 1
            parquet_bytes += size
            if path.parent.name == today:
                per_table[table] += 1
            if MERGED_RE.match(path.name):
                v.merged.add(path.name)
    total_bytes = 0
    for path in v.warehouse.rglob("*"):
        try:
            if path.is_file():
                total_bytes += path.stat().st_size
        except FileNotFoundError:
            pass
    generations = [int(p.stem.rsplit("-", 1)[1]) for p in (v.warehouse / "_state").glob("manifest-*.json")]
    retired: set[str] = set()  # committed files retired and not deleted yet (not the view state's)
    for record in (v.warehouse / "_compaction" / "retired").glob("*.json"):
        try:
            retired.update(f for f in json.loads(record.read_bytes())["files"] if f.split("/", 1)[0] in TABLES)
        except (FileNotFoundError, ValueError):
            pass
    pending = sum((v.warehouse / f).exists() for f in retired)
    pid = v.worker.child_pid if v.worker else None
    return {"t": t, "files": files, "today": per_table, "parquet_bytes": parquet_bytes, "total_bytes": total_bytes,
            "retired_pending": pending, "merged_seen": len(v.merged), "rounds_seen": len(v.rounds),
            "state_generation": max(generations, default=0),
            "rss_mb": rss_tree(pid) / 2**20 if pid and v.worker.alive else NAN}


def time_query(opts: WorkerOptions, warehouse: Path) -> tuple[float, str]:
    """Wall time of `amlwh query QUERY --format csv` in a fresh process, and its answer."""
    env = child_env(PYTHONPATH=str(ROOT), AMLWH_WAREHOUSE__PATH=str(warehouse))
    t0 = time.perf_counter()
    proc = subprocess.run([*opts.worker_cmd, "query", QUERY, "--format", "csv"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=600, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        return NAN, f"rc {proc.returncode}: {proc.stderr.strip()[-300:]}"
    return wall, proc.stdout.strip().splitlines()[-1]


def start(opts: WorkerOptions, stack: Stack, work: Path, v: Variant) -> None:
    v.hub_name, v.hub_cs = stack.new_hub(f"files-{v.label}", opts.files_partitions)
    v.warehouse = work / f"{v.hub_name}-warehouse"
    v.worker = start_worker(opts, stack, v.hub_name, v.hub_cs, stack.new_container("files"), v.warehouse, work,
                            **v.env)


def load(opts: WorkerOptions, work: Path, group: list[Variant]) -> None:
    """Claims, then traffic for files_seconds while sampling; then SIGTERM the workers."""
    for v in group:
        claims = v.worker.wait_for_claims(opts.files_partitions, opts.files_partitions * opts.lb_interval * 3 + 30)
        print(f"  {v.label}: worker claimed {len(claims)} partitions in {claims[-1] - v.worker.t0:.1f}s", flush=True)
    for v in group:
        # the same seed for both: the same documents, so the warehouses should end equal
        v.producer, v.report = start_producer(f"{v.hub_name}-producer", v.hub_cs,
                                              opts.files_partitions, opts.files_rate, opts.files_seconds, work,
                                              seed=opts.seed + 300, payload_bytes=opts.payload_bytes)
        v.cpu0, v.t0 = cpu_of(v.worker.child_pid), time.time()
    t0 = time.time()
    next_sample = t0 + opts.files_sample
    while any(v.producer.alive for v in group) and all(v.worker.alive for v in group):
        for v in group:
            v.rounds |= compact_children(v.worker.child_pid)
        if time.time() >= next_sample:
            next_sample += opts.files_sample
            for v in group:
                s = sample(v, time.time() - t0)
                v.samples.append(s)
                print(f"    t+{s['t']:5.0f}s {v.label:>4}: {s['files']:5,} files ({s['retired_pending']:3} retired "
                      f"pending), today {sum(s['today'].values()):5,}, {s['parquet_bytes'] / 2**20:7.1f} MB parquet, "
                      f"{s['total_bytes'] / 2**20:7.1f} MB all; compaction rounds {s['rounds_seen']}, merged files "
                      f"{s['merged_seen']}, state gen {s['state_generation']}; RSS {s['rss_mb']:.0f} MB", flush=True)
        time.sleep(1.0)
    for v in group:
        v.cpu_cores = (cpu_of(v.worker.child_pid) - v.cpu0) / (time.time() - v.t0)
        v.producer_cpu = v.producer.wait(60)["cpu_s"]
        v.end = sample(v, time.time() - t0)
    for v in group:
        v.ru = v.worker.stop(120)
        v.stopped = sample(v, time.time() - t0)


def run(opts: WorkerOptions, stack: Stack, work: Path) -> dict:
    auto_env = {"AMLWH_COMPACTION__AUTO": "true", "AMLWH_COMPACTION__INTERVAL_S": f"{opts.files_interval:g}",
                "AMLWH_COMPACTION__MIN_FILES": str(opts.files_min_files)}
    variants = [Variant("auto", auto_env), Variant("off", {"AMLWH_COMPACTION__AUTO": "false"})]
    how = "one after the other" if opts.files_sequential else "side by side"
    print(f"\n[4] files: {opts.files_partitions} partitions, live traffic {opts.files_rate:,.0f} events/s for "
          f"{opts.files_seconds:.0f}s per worker, {how}: auto (compaction every {opts.files_interval:g}s, "
          f"min_files {opts.files_min_files}) vs off (AMLWH_COMPACTION__AUTO=false); sampled every "
          f"{opts.files_sample:g}s", flush=True)
    t_start = time.time()
    groups = [[v] for v in variants] if opts.files_sequential else [variants]
    try:
        for group in groups:
            for v in group:
                start(opts, stack, work, v)
            load(opts, work, group)
    finally:
        for v in variants:
            if v.worker is not None and v.worker.alive:
                v.worker.stop(120)
            if v.producer is not None and v.producer.alive:
                v.producer.stop(30)

    # fresh-process query time on each warehouse, alternating auto / off, off / auto, ...
    times: dict[str, list[float]] = {v.label: [] for v in variants}
    answers: dict[str, set[str]] = {v.label: set() for v in variants}
    for k in range(QUERY_REPEATS):
        for v in (variants if k % 2 == 0 else variants[::-1]):
            wall, answer = time_query(opts, v.warehouse)
            times[v.label].append(wall)
            answers[v.label].add(answer)

    result: dict = {"partitions": opts.files_partitions, "rate": opts.files_rate, "seconds": opts.files_seconds,
                    "interval_s": opts.files_interval, "min_files": opts.files_min_files,
                    "sample_s": opts.files_sample, "sequential": opts.files_sequential,
                    "wall_s": time.time() - t_start, "query": QUERY}
    for v in variants:
        prod = json.loads(v.report.read_text()) if v.report.exists() else {"sent": 0, "rate": NAN,
                                                                           "max_behind_s": NAN}
        end, stopped = v.end, v.stopped
        result[v.label] = {
            "sent": prod["sent"], "rate": prod["rate"], "producer_behind_s": prod["max_behind_s"],
            "files_end": end["files"], "files_stopped": stopped["files"],
            "retired_pending_end": end["retired_pending"],
            "today_end": end["today"], "parquet_mb_end": end["parquet_bytes"] / 2**20,
            "total_mb_end": end["total_bytes"] / 2**20,
            "max_files": max([s["files"] for s in v.samples] + [end["files"]]),
            "rounds": len(v.rounds), "merged_files": len(v.merged), "state_generation": stopped["state_generation"],
            "worker_cpu_cores": v.cpu_cores, "peak_rss": v.ru["maxrss_kib"] / 1024,
            "rc": v.ru["rc"], "errors": v.worker.log_errors(),
            "query_s": median(t for t in times[v.label] if not is_nan(t)), "query_runs_s": times[v.label],
            "answer": " / ".join(sorted(answers[v.label])),
            "samples": v.samples,
        }
        r = result[v.label]
        print(f"  {v.label}: producer sent {r['sent']:,} at {r['rate']:,.1f}/s (max {r['producer_behind_s']:.1f}s "
              f"behind schedule, CPU {v.producer_cpu:.0f}s); worker CPU {r['worker_cpu_cores']:.3f} cores, peak RSS "
              f"{r['peak_rss']:.0f} MB, rc {r['rc']}, errors in log {r['errors']}; files at the end of the traffic "
              f"{r['files_end']:,}, after SIGTERM {r['files_stopped']:,}; query {r['query_s']:.2f}s "
              f"({', '.join(f'{t:.2f}' for t in times[v.label])}) -> {r['answer']}",
              flush=True)
    print()
    for line in table_lines(result):
        print(line)
    if not opts.keep:
        for v in variants:
            shutil.rmtree(v.warehouse, ignore_errors=True)
    return result


def table_lines(res: dict) -> list[str]:
    a, o = res["auto"], res["off"]
    mins = res["seconds"] / 60
    header = ["", "compaction auto", "compaction off", "off / auto"]

    def ratio(x: float, y: float) -> str:
        return f"{x / y:.1f}x" if y else "n/a"

    rows = [
        [f"committed files after {mins:g} min (all tables)", f"{a['files_end']:,}", f"{o['files_end']:,}",
         ratio(o["files_end"], a["files_end"])],
        ["  of which retired, deleted after the grace", f"{a['retired_pending_end']:,}",
         f"{o['retired_pending_end']:,}", ""],
        ["  files of today's event date per table", today_cells(a), today_cells(o), ""],
        ["max committed files seen (samples)", f"{a['max_files']:,}", f"{o['max_files']:,}", ""],
        ["Parquet MB / whole warehouse MB", f"{a['parquet_mb_end']:.1f} / {a['total_mb_end']:.1f}",
         f"{o['parquet_mb_end']:.1f} / {o['total_mb_end']:.1f}", ""],
        ["compaction rounds / merged files / state generation", f"{a['rounds']} / {a['merged_files']} / "
         f"{a['state_generation']}", f"{o['rounds']} / {o['merged_files']} / {o['state_generation']}", ""],
        [f"`{res['query']}` s (fresh process, median of {QUERY_REPEATS})", f"{a['query_s']:.2f}",
         f"{o['query_s']:.2f}", ratio(o["query_s"], a["query_s"])],
        ["worker CPU cores / peak RSS MB", f"{a['worker_cpu_cores']:.3f} / {a['peak_rss']:.0f}",
         f"{o['worker_cpu_cores']:.3f} / {o['peak_rss']:.0f}", ""],
    ]
    return md_table(header, rows)


def today_cells(r: dict) -> str:
    short = {"raw_events": "raw", "run_events": "run", "model_registrations": "reg", "model_deployments": "dep",
             "drift_detections": "drift", "dead_letters": "dead", "ignored_events": "ign"}
    return " ".join(f"{short[t]} {n}" for t, n in r["today_end"].items() if n)


def summary_lines(res: dict) -> list[str]:
    a, o = res["auto"], res["off"]
    return [f"  files after {res['seconds'] / 60:g} min at {res['rate']:g} ev/s: {a['files_end']:,} with compaction "
            f"(max {a['max_files']:,}, {a['rounds']} rounds) vs {o['files_end']:,} without; `{res['query']}` "
            f"{a['query_s']:.2f}s vs {o['query_s']:.2f}s (fresh process, median of {QUERY_REPEATS})"]


def markdown(res: dict) -> list[str]:
    how = "one after the other" if res["sequential"] else "side by side"
    return [f"**Committed files**, live traffic at {res['rate']:g} events/s on {res['partitions']} partitions for "
            f"{res['seconds'] / 60:g} min, two workers {how}: automatic compaction at its defaults (every "
            f"{res['interval_s']:g} s, min_files {res['min_files']}) vs `AMLWH_COMPACTION__AUTO=false`:", "",
            *table_lines(res), ""]
