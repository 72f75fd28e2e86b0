"""Backfill throughput: `amlwh backfill files` vs DuckDB's own `read_json`, same file, same run.

    .venv/bin/python bench/bench_backfill.py                 # 1,000,000 events, 5 repeats
    .venv/bin/python bench/bench_backfill.py --events 20000 --repeats 1   # smoke run, seconds

What it does:

1. Writes (once; cached by a name that encodes every parameter) an NDJSON file of
   `--events` message bodies into bench/out/ (bench/backfill_input.py says how).
2. Runs, alternating (A B / B A / A B ...), each in a fresh child process, after an
   os.sync() and a 1 s pause (bench.common.settle()):
   A. `amlwh backfill files FILE --quiet` as a user runs it;
   B. DuckDB `read_json` of the same file into a fresh on-disk database
   (bench/backfill_runs.py says exactly what each runs).
3. Reads wall time, peak RSS and CPU time of each tool's process from a tiny
   launcher that forks/execs it and reaps it with os.wait4 (bench/launch.py), prints
   per-repeat figures, medians and the ratio amlwh seconds / DuckDB seconds.

Benchmarks print figures; they never assert. The machine is shared: quote medians.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import backfill_input, backfill_runs  # noqa: E402
from bench.common import loadavg, machine, md_table, print_preamble, settle, versions, work_dir  # noqa: E402

PACKAGES = ("duckdb", "pyarrow", "pydantic", "orjson", "numpy")


def _n(value) -> str:
    return f"{value:,.0f}" if isinstance(value, (int, float)) else str(value)


def print_table(results: list[backfill_runs.Measured], lines: int) -> None:
    head = (f"{'repeat':>6}  {'tool':<7} {'wall s':>8} {'events/s':>10} {'peak RSS MB':>11} "
            f"{'tree MB':>8} {'CPU s':>7} {'inner s':>8} {'rc':>3}")
    print(head)
    print("-" * len(head))
    for m in results:
        inner = m.facts.get("inner_s")
        print(f"{m.repeat:>6}  {m.tool:<7} {m.wall_s:>8.2f} {lines / m.wall_s:>10,.0f} "
              f"{m.peak_rss_mb:>11,.0f} {m.tree_pss_mb:>8,.0f} {m.cpu_s:>7.2f} "
              f"{'' if inner is None else f'{inner:.2f}':>8} {m.rc:>3}")


def summarize(results: list[backfill_runs.Measured], meta: dict) -> dict:
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
    ratios = [a.wall_s / d.wall_s for a, d in zip(by["amlwh"], by["duckdb"])]
    return {"median": med, "ratios": ratios}


def markdown(meta: dict, med: dict, ratios: list[float], repeats: int, mach: str, vers: str) -> str:
    lines = meta["lines"]
    header = ["", "wall s", "events/s", "peak RSS MB, largest process", "peak memory MB, all processes (PSS)",
              "CPU s"]
    rows = []
    for tool, v in med.items():
        label = "`amlwh backfill files`" if tool == "amlwh" else "DuckDB `read_json` -> table"
        rows.append([label, f"{v['wall_s']:.1f}", f"{v['events_s']:,.0f}", f"{v['peak_rss_mb']:,.0f}",
                     f"{v['tree_pss_mb']:,.0f}", f"{v['cpu_s']:.1f}"])
    out = [
        f"Backfill of {lines:,} synthetic events ({meta['bytes'] / 2**20:,.0f} MiB NDJSON, "
        f"mean line {meta['mean_line_bytes']:,.0f} B) vs DuckDB `read_json` of the same file; "
        f"median of {repeats} alternating run(s) on {mach}; {vers}.",
        "",
        *md_table(header, rows),
    ]
    if "amlwh" in med and "duckdb" in med:
        ratio = med["amlwh"]["wall_s"] / med["duckdb"]["wall_s"]
        out += ["", f"amlwh / DuckDB time: **{ratio:.1f}x** (per run: "
                + ", ".join(f"{x:.1f}x" for x in ratios) + ")."]
    return "\n".join(out)


def parser() -> argparse.ArgumentParser:
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
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    mach, vers = machine(), versions(PACKAGES)
    print_preamble(mach, vers)
    path, meta, cached = backfill_input.dataset(args.events, args.seed, args.payload_bytes, args.days, args.regenerate)
    mix = meta["mix"]
    origin = "cached" if cached else f"generated in {meta['generate_seconds']:.1f}s"
    print(f"input:    {path.relative_to(ROOT)} ({origin})")
    print(f"          {meta['lines']:,} lines, {meta['bytes'] / 2**20:,.0f} MiB, "
          f"mean line {meta['mean_line_bytes']:,.0f} B, {mix['array_bodies']:,} array bodies, "
          f"{mix['poison']} poison lines")
    print("          mix: " + ", ".join(f"{k} {v:,}" for k, v in mix.items()
                                        if k not in ("array_bodies", "poison")))
    print(f"amlwh:    {' '.join(backfill_runs.amlwh_command())} backfill files FILE --quiet"
          + (f" --batch-rows {args.batch_rows}" if args.batch_rows else "") + "  (cwd, PYTHONPATH: repo)")
    print(f"duckdb:   {backfill_runs.DUCKDB_QUERY.format(path='FILE')}"
          + (f"  [threads={args.duckdb_threads}]" if args.duckdb_threads else ""))
    backfill_input.warm_page_cache(path)

    work = work_dir("run-")
    results: list[backfill_runs.Measured] = []
    try:
        print(f"rusage floor: {backfill_runs.rusage_floor(work):.0f} MB (peak RSS reported for `true`)", flush=True)
        for r in range(1, args.repeats + 1):
            order = ["amlwh", "duckdb"] if r % 2 else ["duckdb", "amlwh"]  # A B, B A, A B ...
            for tool in order:
                if tool == "duckdb" and args.skip_duckdb:
                    continue
                settle()
                if tool == "amlwh":
                    m = backfill_runs.run_amlwh(path, r, work, args.batch_rows, args.keep)
                else:
                    m = backfill_runs.run_duckdb(path, r, work, args.duckdb_threads, args.keep)
                results.append(m)
                f = {k: _n(v) for k, v in m.facts.items()}
                if tool == "amlwh":
                    extra = (f"written {f.get('events_written', '?')} dup {f.get('duplicates', '?')} "
                             f"ignored {f.get('ignored', '?')} dead {f.get('dead_letters', '?')} "
                             f"files {f.get('parquet_files', '?')} disk {f.get('disk_mb', '?')} MB")
                else:
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
        print(markdown(meta, med, s["ratios"], args.repeats, mach, vers))
    if args.json:
        args.json.write_text(json.dumps({
            "machine": mach, "versions": vers, "input": meta, "summary": s,
            "runs": [{k: v for k, v in m.__dict__.items() if k not in ("stdout", "stderr")}
                     for m in results],
        }, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
