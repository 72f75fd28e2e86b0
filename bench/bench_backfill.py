"""Backfill throughput: `amlwh backfill files` vs DuckDB's own `read_json`, same file, same run.

    .venv/bin/python bench/bench_backfill.py                 # 1,000,000 events, 5 repeats
    .venv/bin/python bench/bench_backfill.py --events 20000 --repeats 1   # smoke run, seconds

What it does:

1. Writes (once; cached by a name that encodes every parameter) an NDJSON file of
   `--events` message bodies into bench/out/: `devstack.synth.generate` run
   lifecycles plus model and drift events (~1.5 KB mean body, 30% of bodies
   wrapped in a one-element JSON array, mixed Event Grid / CloudEvents envelopes),
   passed through `devstack.synth.disorder` (local shuffles, ~1% hours-late events,
   ~2% redeliveries) plus 4 poison lines per chunk that must dead-letter.
   Generation is chunked so the generator never holds the whole stream.
2. Runs, alternating (A B / B A / A B ...), each in a fresh child process, after an
   os.sync() and a 1 s pause (settle()):
   A. `amlwh backfill files FILE --quiet` as a user runs it, as `python -m consumer` with
      cwd = PYTHONPATH = this checkout (so ./config.toml applies and a worktree measures its
      own code; AMLWH_WAREHOUSE__PATH = a fresh empty directory);
   B. DuckDB in a fresh Python process:
        CREATE TABLE raw AS SELECT * FROM read_json(FILE, format='newline_delimited',
            records=false, columns={'json': 'JSON'}, ignore_errors=true)
      into a fresh on-disk database file (see DUCKDB_QUERY below for why).
3. Reads wall time, peak RSS and CPU time of each tool's process from a tiny
   launcher that forks/execs it and reaps it with os.wait4 (bench/launch.py), prints
   per-repeat figures, medians and the ratio amlwh seconds / DuckDB seconds.

Benchmarks print figures; they never assert. The machine is shared: quote medians.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.launch import run_measured  # noqa: E402
from devstack.synth import disorder, generate, poison_lines  # noqa: E402

OUT = ROOT / "bench" / "out"
FORMAT_VERSION = 1  # bump when the generator recipe below changes: the cache name includes it
CHUNK_RUNS = 20_000  # run lifecycles per generate() call (~120k bodies, ~180 MB in memory)
LINES_PER_RUN = 6.05  # measured mean bodies per run after disorder(), used to spread time
START_US = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z
EVENT_TYPES = (b"RunStatusChanged", b"RunCompleted", b"ModelRegistered", b"ModelDeployed",
               b"DatasetDriftDetected")

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


# -- the input file ----------------------------------------------------------
def dataset_path(events: int, seed: int, payload_bytes: int, days: int) -> Path:
    return OUT / f"events-n{events}-s{seed}-p{payload_bytes}-d{days}-v{FORMAT_VERSION}.ndjson"


def build_dataset(path: Path, events: int, seed: int, payload_bytes: int, days: int) -> dict:
    """Write exactly `events` lines; return the facts stored next to the file."""
    runs_estimate = max(1, round(events / LINES_PER_RUN))
    chunk_span_s = max(3600, int(days * 86400 * min(CHUNK_RUNS, runs_estimate) / runs_estimate))
    counts = dict.fromkeys((t.decode() for t in EVENT_TYPES), 0)
    counts.update(array_bodies=0, poison=0)
    written = total_bytes = chunk = 0
    started = time.perf_counter()
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(temp, "wb", buffering=8 << 20) as fh:
        while written < events:
            chunk_seed = seed * 100_003 + chunk
            stream = generate(
                min(CHUNK_RUNS, runs_estimate), seed=chunk_seed,
                start_us=START_US + chunk * chunk_span_s * 1_000_000, span_s=chunk_span_s,
                payload_bytes=payload_bytes,
            )
            bodies = disorder(stream.bodies, seed=chunk_seed + 1)
            del stream
            rng = random.Random(chunk_seed + 2)
            for body in poison_lines(rng):
                bodies.insert(rng.randrange(len(bodies) + 1), body)
                counts["poison"] += 1
            for body in bodies[: events - written]:
                fh.write(body)
                fh.write(b"\n")
                total_bytes += len(body) + 1
                if body[:1] == b"[":
                    counts["array_bodies"] += 1
                head = body[:400]
                for etype in EVENT_TYPES:
                    if b"." + etype + b'"' in head:
                        counts[etype.decode()] += 1
                        break
            written += min(len(bodies), events - written)
            chunk += 1
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(temp, path)
    meta = {
        "events": events, "seed": seed, "payload_bytes": payload_bytes, "days": days,
        "format_version": FORMAT_VERSION, "lines": written, "bytes": total_bytes,
        "mean_line_bytes": total_bytes / written, "chunks": chunk, "mix": counts,
        "generate_seconds": round(time.perf_counter() - started, 1),
    }
    path.with_suffix(".meta.json").write_text(json.dumps(meta, indent=1))
    return meta


def dataset(args: argparse.Namespace) -> tuple[Path, dict, bool]:
    path = dataset_path(args.events, args.seed, args.payload_bytes, args.days)
    meta_path = path.with_suffix(".meta.json")
    if path.exists() and meta_path.exists() and not args.regenerate:
        meta = json.loads(meta_path.read_text())
        if meta.get("bytes") == path.stat().st_size:
            return path, meta, True
    return path, build_dataset(path, args.events, args.seed, args.payload_bytes, args.days), False


def settle() -> None:
    """Before each measured run: flush what earlier runs left (dirty pages, the deletion of
    their output) and pause. Without it, the run after a deletion measured up to 10% slower
    with 2x the system time, whichever tool it was."""
    os.sync()
    time.sleep(1.0)


def warm_page_cache(path: Path) -> None:
    with open(path, "rb", buffering=0) as fh:
        while fh.read(16 << 20):
            pass


# -- measuring a child ----------------------------------------------------------
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
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMLWH_")}
    env["AMLWH_WAREHOUSE__PATH"] = str(warehouse)
    env["PYTHONPATH"] = str(ROOT)
    return env


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


def run_amlwh(path: Path, repeat: int, work: Path, args: argparse.Namespace) -> Measured:
    warehouse = work / f"warehouse-{repeat}"
    env = amlwh_env(warehouse)
    cmd = amlwh_command() + ["backfill", "files", str(path), "--quiet"]
    if args.batch_rows:
        cmd += ["--batch-rows", str(args.batch_rows)]
    m = run_child("amlwh", repeat, cmd, env, ROOT, work)
    m.facts = parse_amlwh(m.stdout)
    m.facts["parquet_files"] = sum(1 for _ in warehouse.rglob("*.parquet")) if warehouse.exists() else 0
    m.facts["disk_mb"] = _du_mb(warehouse)
    if not args.keep:
        shutil.rmtree(warehouse, ignore_errors=True)
    return m


def run_duckdb(path: Path, repeat: int, work: Path, args: argparse.Namespace) -> Measured:
    db = work / f"duckdb-{repeat}.duckdb"
    cmd = [sys.executable, "-c", DUCKDB_CHILD, str(path), str(db), DUCKDB_QUERY,
           str(args.duckdb_threads or "")]
    m = run_child("duckdb", repeat, cmd, dict(os.environ), ROOT, work)
    try:
        m.facts = json.loads(m.stdout.strip().splitlines()[-1])
        m.facts["inner_s"] = m.facts.pop("seconds")
    except (ValueError, IndexError):
        m.facts = {}
    m.facts["disk_mb"] = _du_mb(db) + _du_mb(db.with_name(db.name + ".wal"))
    if not args.keep:
        for p in (db, db.with_name(db.name + ".wal")):
            p.unlink(missing_ok=True)
    return m


def _n(value) -> str:
    return f"{value:,.0f}" if isinstance(value, (int, float)) else str(value)


def _du_mb(path: Path) -> float:
    if not path.exists():
        return 0.0
    if path.is_file():
        return path.stat().st_size / 2**20
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


# -- report ---------------------------------------------------------------------
def versions() -> str:
    import duckdb
    import numpy
    import orjson
    import pyarrow
    import pydantic

    return (f"python {platform.python_version()}, duckdb {duckdb.__version__}, "
            f"pyarrow {pyarrow.__version__}, pydantic {pydantic.__version__}, "
            f"orjson {orjson.__version__}, numpy {numpy.__version__}")


def machine() -> str:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    mem = ""
    try:
        with open("/proc/meminfo") as fh:
            kib = int(fh.readline().split()[1])
        mem = f", {kib / 2**20:.1f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return f"{os.cpu_count()} cores ({usable} usable){mem}, {platform.platform()}"


def loadavg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def print_table(results: list[Measured], lines: int) -> None:
    head = (f"{'repeat':>6}  {'tool':<7} {'wall s':>8} {'events/s':>10} {'peak RSS MB':>11} "
            f"{'tree MB':>8} {'CPU s':>7} {'inner s':>8} {'rc':>3}")
    print(head)
    print("-" * len(head))
    for m in results:
        inner = m.facts.get("inner_s")
        print(f"{m.repeat:>6}  {m.tool:<7} {m.wall_s:>8.2f} {lines / m.wall_s:>10,.0f} "
              f"{m.peak_rss_mb:>11,.0f} {m.tree_pss_mb:>8,.0f} {m.cpu_s:>7.2f} "
              f"{'' if inner is None else f'{inner:.2f}':>8} {m.rc:>3}")


def summarize(results: list[Measured], meta: dict) -> dict:
    lines = meta["lines"]
    by = {t: [m for m in results if m.tool == t] for t in ("amlwh", "duckdb")}
    med = {}
    for tool, ms in by.items():
        if ms:
            wall = statistics.median(m.wall_s for m in ms)
            inner = [m.facts["inner_s"] for m in ms if "inner_s" in m.facts]
            med[tool] = {
                "wall_s": wall, "events_s": lines / wall,
                "peak_rss_mb": statistics.median(m.peak_rss_mb for m in ms),
                "max_rss_mb": max(m.peak_rss_mb for m in ms),
                "tree_pss_mb": statistics.median(m.tree_pss_mb for m in ms),
                "cpu_s": statistics.median(m.cpu_s for m in ms),
                "inner_s": statistics.median(inner) if inner else None,
            }
    ratios = []
    for a, d in zip(by["amlwh"], by["duckdb"]):
        ratios.append(a.wall_s / d.wall_s)
    return {"median": med, "ratios": ratios}


def markdown(meta: dict, med: dict, ratios: list[float], args: argparse.Namespace) -> str:
    lines = meta["lines"]
    out = [
        f"Backfill of {lines:,} synthetic events ({meta['bytes'] / 2**20:,.0f} MiB NDJSON, "
        f"mean line {meta['mean_line_bytes']:,.0f} B) vs DuckDB `read_json` of the same file; "
        f"median of {args.repeats} alternating run(s) on {machine()}; {versions()}.",
        "",
        "| | wall s | events/s | peak RSS MB, largest process | peak memory MB, all processes (PSS) | CPU s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for tool, v in med.items():
        label = "`amlwh backfill files`" if tool == "amlwh" else "DuckDB `read_json` -> table"
        out.append(f"| {label} | {v['wall_s']:.1f} | {v['events_s']:,.0f} | "
                   f"{v['peak_rss_mb']:,.0f} | {v['tree_pss_mb']:,.0f} | {v['cpu_s']:.1f} |")
    if "amlwh" in med and "duckdb" in med:
        ratio = med["amlwh"]["wall_s"] / med["duckdb"]["wall_s"]
        out += ["", f"amlwh / DuckDB time: **{ratio:.1f}x** (per run: "
                + ", ".join(f"{x:.1f}x" for x in ratios) + ")."]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=1_000_000, help="NDJSON lines (bodies) in the file")
    p.add_argument("--repeats", type=int, default=5, help="measured runs of each tool")
    p.add_argument("--payload-bytes", type=int, default=1620,
                   help="devstack.synth padding knob; 1620 gives a ~1.5 KB mean line")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--days", type=int, default=30, help="event-time span of the whole file")
    p.add_argument("--batch-rows", type=int, default=None,
                   help="pass --batch-rows to amlwh (default: config.toml's [backfill] batch_rows)")
    p.add_argument("--duckdb-threads", type=int, default=None, help="SET threads (default: DuckDB's)")
    p.add_argument("--skip-duckdb", action="store_true", help="only run amlwh")
    p.add_argument("--regenerate", action="store_true", help="rewrite the NDJSON even if cached")
    p.add_argument("--keep", action="store_true",
                   help="keep the warehouses, DuckDB files and child logs under bench/out/")
    p.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    p.add_argument("--markdown", action="store_true", help="also print a README-ready markdown block")
    args = p.parse_args(argv)

    print(f"machine:  {machine()}")
    print(f"versions: {versions()}")
    print(f"load avg at start: {loadavg()}")
    path, meta, cached = dataset(args)
    mix = meta["mix"]
    print(f"input:    {path.relative_to(ROOT)} ({'cached' if cached else 'generated in %.1fs' % meta['generate_seconds']})")
    print(f"          {meta['lines']:,} lines, {meta['bytes'] / 2**20:,.0f} MiB, "
          f"mean line {meta['mean_line_bytes']:,.0f} B, {mix['array_bodies']:,} array bodies, "
          f"{mix['poison']} poison lines")
    print("          mix: " + ", ".join(f"{k} {v:,}" for k, v in mix.items()
                                        if k not in ("array_bodies", "poison")))
    print(f"amlwh:    {' '.join(amlwh_command())} backfill files FILE --quiet"
          + (f" --batch-rows {args.batch_rows}" if args.batch_rows else "") + "  (cwd, PYTHONPATH: repo)")
    print(f"duckdb:   {DUCKDB_QUERY.format(path='FILE')}"
          + (f"  [threads={args.duckdb_threads}]" if args.duckdb_threads else ""))
    warm_page_cache(path)

    OUT.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="run-", dir=OUT))
    results: list[Measured] = []
    try:
        print(f"rusage floor: {rusage_floor(work):.0f} MB (peak RSS reported for `true`)", flush=True)
        for r in range(1, args.repeats + 1):
            order = ["amlwh", "duckdb"] if r % 2 else ["duckdb", "amlwh"]  # A B, B A, A B ...
            for tool in order:
                if tool == "duckdb" and args.skip_duckdb:
                    continue
                run = run_amlwh if tool == "amlwh" else run_duckdb
                settle()
                m = run(path, r, work, args)
                results.append(m)
                extra = ""
                if tool == "amlwh":
                    f = {k: _n(v) for k, v in m.facts.items()}
                    extra = (f"written {f.get('events_written', '?')} dup {f.get('duplicates', '?')} "
                             f"ignored {f.get('ignored', '?')} dead {f.get('dead_letters', '?')} "
                             f"files {f.get('parquet_files', '?')} disk {f.get('disk_mb', '?')} MB")
                else:
                    f = {k: _n(v) for k, v in m.facts.items()}
                    extra = (f"rows {f.get('rows', '?')} (null {f.get('null_rows', '?')}) "
                             f"disk {f.get('disk_mb', '?')} MB")
                print(f"  repeat {r} {tool:<6} {m.wall_s:7.2f}s  rc={m.rc}  {extra}", flush=True)
                if m.rc != 0:
                    print("    stderr: " + m.stderr.strip()[-2000:].replace("\n", "\n    "))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    lines = meta["lines"]
    print()
    print_table(results, lines)
    s = summarize(results, meta)
    med = s["median"]
    print()
    print(f"medians over {args.repeats} repeat(s), events/s = {lines:,} lines / process wall time:")
    for tool, v in med.items():
        inner = "" if v["inner_s"] is None else f", in-process {v['inner_s']:.2f}s ({lines / v['inner_s']:,.0f}/s)"
        print(f"  {tool:<6} {v['wall_s']:8.2f}s  {v['events_s']:>10,.0f} events/s  peak RSS "
              f"{v['peak_rss_mb']:,.0f} MB (max {v['max_rss_mb']:,.0f}), all processes "
              f"{v['tree_pss_mb']:,.0f} MB  CPU {v['cpu_s']:.2f}s{inner}")
    if "amlwh" in med and "duckdb" in med:
        ratio = med["amlwh"]["wall_s"] / med["duckdb"]["wall_s"]
        print(f"  ratio amlwh/duckdb time: {ratio:.2f}x (ratio of the medians); per repeat: "
              + ", ".join(f"{x:.2f}x" for x in s["ratios"]))
        print(f"  targets (informative, not asserted): >= 100,000 events/s -> "
              f"{med['amlwh']['events_s']:,.0f}; <= 2.0x DuckDB -> {ratio:.2f}x; "
              f"peak memory {med['amlwh']['tree_pss_mb']:,.0f} MB (all processes) for a "
              f"{meta['bytes'] / 2**20:,.0f} MiB file")
    print(f"load avg at end: {loadavg()}")
    if args.markdown and med:
        print()
        print(markdown(meta, med, s["ratios"], args))
    if args.json:
        args.json.write_text(json.dumps({
            "machine": machine(), "versions": versions(), "input": meta, "summary": s,
            "runs": [{k: v for k, v in m.__dict__.items() if k not in ("stdout", "stderr")}
                     for m in results],
        }, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
