"""Part 3 of bench_worker: latency from the hub's enqueued time to the run being visible in `runs`.

A 4-partition hub; a producer process (bench/live_producer.py) sends live traffic (eventTime =
send time) at --latency-rate events/s. The sample is every run whose final status was enqueued
in a steady window (after --latency-warmup s, --latency-window s long); traffic goes on for
max_lateness + 10 s after the window, so no sampled event waits on the idle rule. Every 0.5 s
the bench opens consumer.query.connect and reads `SELECT run_id, status FROM runs`; latency =
start of the first poll showing the run with its final status - the hub's enqueued time of the
first event with that status (run_events.enqueued_at).

Also reported: enqueued -> decoded by the worker (run_events.ingested_at, stamped when the batch
is decoded, before the reorder buffer) and enqueued -> committed (ctime of the committed Parquet
file: the rename that commits it, after the buffer released the event). Buffered events are
visible before they are committed, through the worker's provisional files
(consumer/live/provisional.py); `runs` reads both. Measured once per --latency-settings entry:
the defaults (max_lateness 30 s, writer max_seconds 2 s) and AMLWH_ORDERING__MAX_LATENESS_S=2.
Target p95 < 5 s.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from bench.common import md_table, pct
from bench.worker_common import Stack, WorkerOptions, start_producer, start_worker

PARTITIONS = 4

# For each run in `runs`, the first run_events row with its final status (and the file it is in).
FIRSTS_SQL = """
    WITH firsts AS (
        SELECT run_id, status, enqueued_at, ingested_at, filename,
               row_number() OVER (PARTITION BY run_id, status ORDER BY enqueued_at, sequence_number) AS rn
        FROM read_parquet('{glob}', filename = true)
    )
    SELECT r.run_id, r.status, f.enqueued_at, f.ingested_at, f.filename
    FROM runs r JOIN firsts f ON f.run_id = r.run_id AND f.status = r.status AND f.rn = 1
"""


def label_of(lateness: float | None) -> str:
    return "default" if lateness is None else f"MAX_LATENESS_S={lateness:g}"


def run(opts: WorkerOptions, stack: Stack, work: Path, lateness: float | None) -> dict:
    """One setting: `lateness` None = the default max_lateness, else AMLWH_ORDERING__MAX_LATENESS_S."""
    from consumer.config import OrderingSettings
    from consumer.query.connection import connect

    effective = OrderingSettings().max_lateness_s if lateness is None else lateness
    label = label_of(lateness)
    seconds = opts.latency_warmup + opts.latency_window + effective + 10
    print(f"\n[3] latency ({label}: max_lateness {effective:g}s): {PARTITIONS} partitions, live traffic "
          f"{opts.latency_rate:,.0f} events/s for {seconds:.0f}s, sample = runs whose final status was enqueued in "
          f"[{opts.latency_warmup:g}s, {opts.latency_warmup + opts.latency_window:g}s)", flush=True)
    name, cs = stack.new_hub("lat", PARTITIONS)
    warehouse = work / f"{name}-warehouse"
    extra = {} if lateness is None else {"AMLWH_ORDERING__MAX_LATENESS_S": str(lateness)}
    worker = start_worker(opts, stack, name, cs, stack.new_container("lat"), warehouse, work, **extra)
    seen: dict[tuple[str, str], float] = {}
    poll_s: list[float] = []
    try:
        worker.wait_for_claims(PARTITIONS, PARTITIONS * opts.lb_interval * 3 + 30)
        producer, report = start_producer(f"{name}-producer", cs, PARTITIONS, opts.latency_rate, seconds, work,
                                          seed=opts.seed + 200, payload_bytes=opts.payload_bytes)
        stop_at = None
        while worker.alive:
            t = time.time()
            if stop_at is None and not producer.alive:
                stop_at = t + 3
            if stop_at is not None and t >= stop_at:
                break
            con = connect(warehouse)
            try:
                for run_id, status in con.execute("SELECT run_id, status FROM runs").fetchall():
                    seen.setdefault((run_id, status), t)
            finally:
                con.close()
            poll_s.append(time.time() - t)
            time.sleep(max(0.0, t + 0.5 - time.time()))
        prod = json.loads(report.read_text())
    finally:
        ru = worker.stop(90)
    con = connect(warehouse)
    glob = str(warehouse / "run_events" / "*" / "*.parquet").replace("'", "''")
    rows = con.execute(FIRSTS_SQL.format(glob=glob)).fetchall()
    con.close()
    lo = prod["start"] + opts.latency_warmup
    hi = lo + opts.latency_window
    visible, released, durable, unseen = [], [], [], 0
    ctimes: dict[str, float] = {}
    for run_id, status, enq, ing, filename in rows:
        e = enq.timestamp()
        if not lo <= e < hi:
            continue
        if filename not in ctimes:
            ctimes[filename] = os.stat(filename).st_ctime
        released.append(ing.timestamp() - e)
        durable.append(ctimes[filename] - e)
        if (run_id, status) in seen:
            visible.append(seen[(run_id, status)] - e)
        else:
            unseen += 1
    result = {
        "label": label, "max_lateness_s": effective, "rate": prod["rate"], "sent": prod["sent"],
        "producer_behind_s": prod["max_behind_s"], "sample": len(visible), "unseen": unseen,
        "visible_p50": pct(visible, 0.5), "visible_p95": pct(visible, 0.95),
        "visible_max": max(visible, default=float("nan")),
        "released_p50": pct(released, 0.5), "released_p95": pct(released, 0.95),
        "durable_p50": pct(durable, 0.5), "durable_p95": pct(durable, 0.95),
        "poll_p50_ms": pct(poll_s, 0.5) * 1000, "rc": ru["rc"],
    }
    print(f"  producer sent {prod['sent']:,} at {prod['rate']:,.0f}/s (max {prod['max_behind_s']:.2f}s behind); "
          f"sample {len(visible)} runs ({unseen} never seen with their final status); poll query p50 "
          f"{result['poll_p50_ms']:.0f} ms; worker rc {ru['rc']}", flush=True)
    print(f"  enqueued -> decoded p50 {result['released_p50']:.2f}s p95 {result['released_p95']:.2f}s; "
          f"-> durable Parquet p50 {result['durable_p50']:.2f}s p95 {result['durable_p95']:.2f}s; "
          f"-> visible in runs p50 {result['visible_p50']:.2f}s p95 {result['visible_p95']:.2f}s "
          f"max {result['visible_max']:.2f}s", flush=True)
    if not opts.keep:
        shutil.rmtree(warehouse, ignore_errors=True)
    return result


def summary_lines(lats: list[dict]) -> list[str]:
    return [f"  latency {r['label']}: visible in runs p50 {r['visible_p50']:.1f}s p95 {r['visible_p95']:.1f}s "
            f"(n={r['sample']}); target p95 < 5 s" for r in lats]


def markdown(opts: WorkerOptions, lats: list[dict]) -> list[str]:
    header = ["setting", "runs", "decoded p50 / p95 s", "committed p50 / p95 s", "visible p50 s", "visible p95 s"]
    rows = [[f"{r['label']} (max_lateness {r['max_lateness_s']:g} s)", f"{r['sample']}",
             f"{r['released_p50']:.1f} / {r['released_p95']:.1f}", f"{r['durable_p50']:.1f} / {r['durable_p95']:.1f}",
             f"{r['visible_p50']:.1f}", f"**{r['visible_p95']:.1f}**"] for r in lats]
    return [
        f"**Latency**, event enqueued -> its run visible with that status in `runs` (polled every 0.5 s): "
        f"{PARTITIONS} partitions, live traffic at {opts.latency_rate:,.0f} events/s, every run whose final status "
        f"was enqueued in a {opts.latency_window:g} s steady window:", "",
        *md_table(header, rows),
        "", "Target p95 < 5 s. Under steady traffic an event waits in its partition's reorder buffer "
        "until the watermark (newest event time - max_lateness) passes it, so it is committed "
        "~max_lateness after arrival; meanwhile the flush after its arrival (writer max_seconds, "
        "2 s) shows it in the provisional files, which is when `runs` sees it."]
