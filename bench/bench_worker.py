"""Live worker (`amlwh run`) on the local hub + Azurite: throughput vs raw SDK, peak RSS, latency, files.

    .venv/bin/python bench/bench_worker.py               # full run (~10 minutes)
    .venv/bin/python bench/bench_worker.py --quick       # smoke run (< 2 minutes)
    .venv/bin/python bench/bench_worker.py --markdown    # also print a README-ready block
    .venv/bin/python bench/bench_worker.py --only throughput --repeats 5 --events 150000
    .venv/bin/python bench/bench_worker.py --only throughput --profile   # + py-spy stacks
    .venv/bin/python bench/bench_worker.py --only files   # an hour: files with / without compaction

This is the driver; each part is its own module, whose docstring states what it times:

    1. bench/worker_throughput.py   events/s, worker vs the raw SDK (bench/raw_consumer.py)
    2. bench/worker_rss.py          peak RSS, one worker owning 32 partitions under live load
    3. bench/worker_latency.py      enqueued -> visible in `runs`, under live load
    4. bench/worker_files.py        committed files over an hour, automatic compaction vs none
                                    (not in the default --only: it takes an hour)

One LocalHub process and one Azurite process serve the whole run; every measurement gets a
fresh event hub, checkpoint container and warehouse directory. The worker always runs as a
real process (--worker-cmd, default `python -m consumer`, plus `run`; cwd = repo) with the
production defaults, except `[eventhub] load_balancing_interval_s` = 1 s (the balanced
strategy claims one partition per interval, so at the default 10 s a lone worker would need
30 s to claim 4 partitions), --prefetch / --max-batch-size when given, and what a part
states. Consumers and producers run under a tiny launcher (bench/launch.py) that reports
their peak RSS and CPU time from os.wait4.

Benchmarks print figures and ratios; they never assert. The machine is shared and noisy:
quote medians.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import worker_files, worker_latency, worker_rss, worker_throughput  # noqa: E402
from bench.common import loadavg, machine, print_preamble, versions, work_dir  # noqa: E402
from bench.worker_common import WorkerOptions, local_stack  # noqa: E402

PACKAGES = ("azure-eventhub", "azure-eventhub-checkpointstoreblob-aio", "azure-storage-blob", "pyarrow",
            "duckdb", "pydantic", "orjson")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes, short runs (smoke test, < 2 minutes)")
    p.add_argument("--only", default="throughput,rss,latency", help="comma list of throughput,rss,latency,files")
    p.add_argument("--repeats", type=int, default=None, help="throughput repeats (default 3; 1 with --quick)")
    p.add_argument("--events", type=int, default=None, help="throughput events (default 100,000; 6,000 quick)")
    p.add_argument("--partitions", type=int, default=4, help="throughput hub partitions")
    p.add_argument("--span-hours", type=int, default=24, help="event-time span of the throughput stream")
    p.add_argument("--payload-bytes", type=int, default=1620, help="devstack.synth padding; 1620 ~ 1.5 KB bodies")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--lb-interval", type=float, default=None, help="load_balancing_interval_s (1; 0.3 quick)")
    p.add_argument("--skip-tail", action="store_true",
                   help="do not wait for the idle release of the last H events (measured in repeat 1 only anyway)")
    p.add_argument("--rss-partitions", type=int, default=32)
    p.add_argument("--rss-rate", type=float, default=None, help="events/s (default 1000; 300 quick)")
    p.add_argument("--rss-seconds", type=float, default=None, help="load duration (default 60; 12 quick)")
    p.add_argument("--latency-rate", type=float, default=200.0)
    p.add_argument("--latency-warmup", type=float, default=None, help="seconds excluded at the start (5)")
    p.add_argument("--latency-window", type=float, default=None, help="sampled seconds (60; 8 quick)")
    p.add_argument("--latency-settings", default=None,
                   help="comma list of 'default' and lateness seconds (default 'default,2'; quick '2')")
    p.add_argument("--files-partitions", type=int, default=4)
    p.add_argument("--files-rate", type=float, default=50.0, help="events/s per producer (one per worker)")
    p.add_argument("--files-seconds", type=float, default=None, help="traffic duration (default 3600; 120 quick)")
    p.add_argument("--files-interval", type=float, default=None,
                   help="[compaction] interval_s of the compacting worker (default 300, the production default; "
                        "20 quick)")
    p.add_argument("--files-min-files", type=int, default=8, help="[compaction] min_files of the compacting worker")
    p.add_argument("--files-sample", type=float, default=None, help="seconds between samples (60; 10 quick)")
    p.add_argument("--files-sequential", action="store_true",
                   help="run the two workers one after the other instead of side by side")
    p.add_argument("--timeout", type=float, default=600, help="per consumer run")
    p.add_argument("--keep", action="store_true", help="keep warehouses and logs under bench/out/worker-*")
    p.add_argument("--profile", action="store_true",
                   help="record the worker with py-spy during the throughput runs (implies --keep)")
    p.add_argument("--prefetch", type=int, default=None,
                   help="[eventhub] prefetch for the worker and the raw baseline (default: the worker's default)")
    p.add_argument("--max-batch-size", type=int, default=None,
                   help="[eventhub] max_batch_size for the worker and the raw baseline (default: the worker's)")
    p.add_argument("--worker-cmd", default=None,
                   help="command that stands for `amlwh` (default: python -m consumer), e.g. to A/B a patched "
                        "worker; `run` is appended")
    p.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    p.add_argument("--markdown", action="store_true", help="also print a README-ready markdown block")
    return p


def options(args: argparse.Namespace) -> WorkerOptions:
    """The command line with the quick or full defaults filled in."""
    q = args.quick
    return WorkerOptions(
        worker_cmd=tuple(shlex.split(args.worker_cmd)) if args.worker_cmd else (sys.executable, "-m", "consumer"),
        lb_interval=args.lb_interval or (0.3 if q else 1.0),
        prefetch=args.prefetch, max_batch_size=args.max_batch_size, timeout=args.timeout,
        keep=args.keep or args.profile, seed=args.seed, payload_bytes=args.payload_bytes,
        repeats=args.repeats or (1 if q else 3), events=args.events or (6_000 if q else 100_000),
        partitions=args.partitions, span_hours=args.span_hours,
        skip_tail=args.skip_tail or q or args.profile, profile=args.profile,
        rss_partitions=args.rss_partitions, rss_rate=args.rss_rate or (300.0 if q else 1000.0),
        rss_seconds=args.rss_seconds or (12.0 if q else 60.0),
        latency_rate=args.latency_rate,
        latency_warmup=args.latency_warmup if args.latency_warmup is not None else (3.0 if q else 5.0),
        latency_window=args.latency_window or (8.0 if q else 60.0),
        latency_settings=tuple(None if s == "default" else float(s)
                               for s in (args.latency_settings or ("2" if q else "default,2")).split(",")),
        files_partitions=args.files_partitions, files_rate=args.files_rate,
        files_seconds=args.files_seconds or (120.0 if q else 3600.0),
        files_interval=args.files_interval or (20.0 if q else 300.0), files_min_files=args.files_min_files,
        files_sample=args.files_sample or (10.0 if q else 60.0), files_sequential=args.files_sequential,
    )


def markdown(opts: WorkerOptions, mach: str, vers: str, tp: dict | None, mem: dict | None,
             lats: list[dict], files: dict | None = None) -> str:
    knobs = [f"`load_balancing_interval_s = {opts.lb_interval:g}`"]
    if opts.prefetch:
        knobs.append(f"`prefetch = {opts.prefetch}` (raw SDK too)")
    if opts.max_batch_size:
        knobs.append(f"`max_batch_size = {opts.max_batch_size}` (raw SDK too)")
    out = [f"`bench/bench_worker.py` on {mach}; {vers}. The worker runs as a process with the production "
           f"defaults except {', '.join(knobs)}; local hub + Azurite on the same machine.", ""]
    if tp:
        out += worker_throughput.markdown(opts, tp)
    if mem:
        out += worker_rss.markdown(mem)
    if lats:
        out += worker_latency.markdown(opts, lats)
    if files:
        out += worker_files.markdown(files)
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    opts = options(args)
    only = set(args.only.split(","))

    mach, vers = machine(), versions(PACKAGES, azurite=True)
    print_preamble(mach, vers)
    work = work_dir("worker-")
    print(f"work dir: {work.relative_to(ROOT)} ({'kept' if opts.keep else 'removed at the end'})", flush=True)
    tp = mem = files = None
    lats: list[dict] = []
    try:
        with local_stack() as stack:
            if "throughput" in only:
                tp = worker_throughput.run(opts, stack, work)
            if "rss" in only:
                mem = worker_rss.run(opts, stack, work)
            if "latency" in only:
                for lateness in opts.latency_settings:
                    lats.append(worker_latency.run(opts, stack, work, lateness))
            if "files" in only:
                files = worker_files.run(opts, stack, work)
    finally:
        if not opts.keep:
            shutil.rmtree(work, ignore_errors=True)

    print("\n== summary (medians; targets informative, never asserted)")
    lines = []
    if tp:
        lines += worker_throughput.summary_lines(tp)
    if mem:
        lines += worker_rss.summary_lines(mem)
    lines += worker_latency.summary_lines(lats)
    if files:
        lines += worker_files.summary_lines(files)
    for line in lines:
        print(line)
    print(f"load avg at end: {loadavg()}")
    if args.markdown:
        print()
        print(markdown(opts, mach, vers, tp, mem, lats, files))
    if args.json:
        args.json.write_text(json.dumps({"machine": mach, "versions": vers, "throughput": tp, "rss": mem,
                                         "latency": lats, "files": files}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
