"""Part 2 of bench_worker: peak RSS of one worker owning 32 partitions under sustained load.

One worker claims all --rss-partitions (default 32; the bench waits for the claims), then a
producer process (bench/live_producer.py) sends live traffic (the devstack.synth mix with
eventTime = send time, keyed by subject) at --rss-rate events/s for --rss-seconds. RSS is polled
every 0.5 s (psutil, the worker and its children) while loaded and while the buffers drain
afterwards; the lifetime peak (incl. that drain and the SIGTERM shutdown) is os.wait4's, from
the launcher. Live event times matter: the reorder buffer holds ~rate x max_lateness events, so
RSS is also fitted against events in flight (sent - durable) to give KB per held event.
Target < 300 MB.
"""

from __future__ import annotations

import json
import shutil
import statistics
import time
from pathlib import Path

from bench.common import NAN, md_table
from bench.worker_common import RawCounter, Stack, WorkerOptions, cpu_of, rss_tree, start_producer, start_worker


def run(opts: WorkerOptions, stack: Stack, work: Path) -> dict:
    print(f"\n[2] peak RSS: {opts.rss_partitions} partitions, live traffic {opts.rss_rate:,.0f} events/s for "
          f"{opts.rss_seconds:.0f}s (eventTime = send time), default settings", flush=True)
    name, cs = stack.new_hub("rss", opts.rss_partitions)
    warehouse = work / f"{name}-warehouse"
    worker = start_worker(opts, stack, name, cs, stack.new_container("rss"), warehouse, work)
    load: list[tuple[float, float, int]] = []  # (seconds into the load, RSS MB, durable rows)
    drain: list[float] = []
    prod = {"sent": 0, "rate": 0.0, "max_behind_s": 0.0, "start": time.time()}
    prod_cpu = idle_rss = load_cpu = NAN
    counter = RawCounter(warehouse)
    try:
        claims = worker.wait_for_claims(opts.rss_partitions, opts.rss_partitions * opts.lb_interval * 3 + 30)
        time.sleep(2)
        idle_rss = rss_tree(worker.child_pid) / 2**20
        print(f"  worker claimed {len(claims)} partitions in {claims[-1] - worker.t0:.1f}s; RSS idle "
              f"{idle_rss:.0f} MB", flush=True)
        producer, report = start_producer(f"{name}-producer", cs, opts.rss_partitions, opts.rss_rate,
                                          opts.rss_seconds, work, seed=opts.seed + 100,
                                          payload_bytes=opts.payload_bytes)
        cpu0, t0 = cpu_of(worker.child_pid), time.time()
        next_print = t0 + 10
        while producer.alive and worker.alive:
            load.append((time.time() - t0, rss_tree(worker.child_pid) / 2**20, counter.count()))
            if time.time() >= next_print:
                next_print += 10
                print(f"    t+{load[-1][0]:4.0f}s RSS {load[-1][1]:4.0f} MB, durable {load[-1][2]:,}", flush=True)
            time.sleep(0.5)
        load_cpu = (cpu_of(worker.child_pid) - cpu0) / (time.time() - t0)
        prod_cpu = producer.wait(30)["cpu_s"]
        if report.exists():
            prod = json.loads(report.read_text())
        # The buffers empty by themselves (watermark, then the idle rule max_lateness s after
        # the last event): wait for every sent event to be durable before SIGTERM.
        deadline = time.time() + 120
        while worker.alive and time.time() < deadline and counter.count() < prod["sent"]:
            drain.append(rss_tree(worker.child_pid) / 2**20)
            time.sleep(0.5)
        drain_s = time.time() - t0 - (prod["end"] - prod["start"]) if "end" in prod else NAN
    finally:
        ru = worker.stop(90)
    # RSS against the events in flight (sent, not yet durable: mostly held by the reorder
    # buffers) while loaded: the slope is the worker's memory per buffered event.
    offset = prod["start"] - t0 if "start" in prod else 0.0
    points = [(max(0.0, (t - offset)) * prod["rate"] - durable, mb) for t, mb, durable in load if t - offset > 2]
    slope = NAN
    if len(points) >= 3 and len({x for x, _ in points}) > 1:
        slope = statistics.linear_regression([x for x, _ in points], [y for _, y in points]).slope * 1024
    result = {
        "partitions": opts.rss_partitions, "rate": prod["rate"], "seconds": opts.rss_seconds, "sent": prod["sent"],
        "idle_rss": idle_rss, "load_peak_rss": max((mb for _, mb, _ in load), default=NAN),
        "end_load_rss": load[-1][1] if load else NAN, "drain_peak_rss": max(drain, default=NAN),
        "peak_rss": ru["maxrss_kib"] / 1024, "rc": ru["rc"], "load_cpu_cores": load_cpu,
        "in_flight_max": max((x for x, _ in points), default=0), "kb_per_in_flight": slope,
        "durable_at_end": load[-1][2] if load else 0, "drained": counter.count(), "drain_s": drain_s,
        "producer_behind_s": prod["max_behind_s"], "errors": worker.log_errors(),
    }
    print(f"  producer: sent {prod['sent']:,} at {prod['rate']:,.0f}/s (max {prod['max_behind_s']:.1f}s behind "
          f"schedule, CPU {prod_cpu:.0f}s); worker CPU {load_cpu:.2f} cores while loaded", flush=True)
    print(f"  worker RSS: idle {idle_rss:.0f} MB; under load peak {result['load_peak_rss']:.0f} MB (polled), "
          f"{result['end_load_rss']:.0f} MB at the end with ~{result['in_flight_max']:,.0f} events in flight "
          f"(~{slope:.1f} KB RSS per in-flight event); drain (idle release, {drain_s:.0f}s) peak "
          f"{result['drain_peak_rss']:.0f} MB; lifetime peak {result['peak_rss']:.0f} MB (wait4, incl. shutdown)",
          flush=True)
    print(f"  durable at end of load {result['durable_at_end']:,}/{prod['sent']:,}, after drain "
          f"{result['drained']:,}; rc {ru['rc']}, errors in log {result['errors']}", flush=True)
    if not opts.keep:
        shutil.rmtree(warehouse, ignore_errors=True)
    return result


_SUMMARY = ("  peak RSS ({partitions} partitions, {rate:,.0f} ev/s live): {peak_rss:.0f} MB lifetime (wait4), "
            "{load_peak_rss:.0f} MB under load, {drain_peak_rss:.0f} MB polled while draining, {idle_rss:.0f} MB "
            "idle; ~{kb_per_in_flight:.1f} KB per in-flight event; target < 300 MB")


def summary_lines(mem: dict) -> list[str]:
    return [_SUMMARY.format(**mem)]


def markdown(mem: dict) -> list[str]:
    header = ["idle, 32 partitions claimed", "under load (polled peak)", "events in flight at end of load",
              "RSS per in-flight event", "drain after load (polled peak)", "lifetime peak (wait4)"]
    row = [f"{mem['idle_rss']:,.0f} MB", f"{mem['load_peak_rss']:,.0f} MB", f"{mem['in_flight_max']:,.0f}",
           f"{mem['kb_per_in_flight']:.1f} KB", f"{mem['drain_peak_rss']:,.0f} MB", f"**{mem['peak_rss']:,.0f} MB**"]
    return [
        f"**Peak RSS**, one worker owning {mem['partitions']} partitions, live traffic (eventTime = send time) at "
        f"{mem['rate']:,.0f} events/s for {mem['seconds']:.0f} s, default max_lateness 30 s:", "",
        *md_table(header, [row], left=0),
        "",
        f"Target < 300 MB. The reorder buffers hold ~rate x max_lateness events, so RSS grows with the "
        f"traffic rate; the drain peak is the idle release of all of them at once, max_lateness s after "
        f"the traffic stops. Worker CPU under load: {mem['load_cpu_cores']:.2f} cores.", ""]
