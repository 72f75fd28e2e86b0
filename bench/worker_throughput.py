"""Part 1 of bench_worker: throughput of `amlwh run` against the raw SDK, same backlog.

N events (bench/backlog.py) are published once per repeat into a fresh hub of P partitions
(default 4). Then, alternating A B / B A, each from earliest with its own fresh checkpoint
container:

  A. raw SDK (bench/raw_consumer.py): a fresh process running EventHubConsumerClient.receive_batch
     with a BlobCheckpointStore, the worker's prefetch, max_batch_size, max_wait_time and
     balanced load balancing at the same interval; it only counts, and awaits
     `update_checkpoint(last event)` once per non-empty batch. Done when it has received all N.
  B. `amlwh run`, hub -> durable Parquet. Done when raw_events/*/*.parquet hold N - H rows
     (summed from Parquet footers, polled every 0.1 s); H: see bench/backlog.py. Repeat 1 also
     waits for all N (the idle release), unless --skip-tail / --quick / --profile.

events/s = events / seconds from process start (interpreter start-up and imports included)
and from the first partition claim. Ratio = worker / raw, per repeat and of the medians
(target >= 0.8). The hub's and Azurite's CPU is printed too, to show the machine was not
saturated by them. With --profile, py-spy samples the worker's stacks while it catches up.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench import backlog
from bench.common import NAN, ROOT, child_env, is_nan, md_table, median
from bench.launch import Launched
from bench.worker_common import RawCounter, Stack, WorkerOptions, cpu_of, start_worker

LATENESS_S = 30.0  # the default [ordering] max_lateness_s, for H


def run_raw(opts: WorkerOptions, stack: Stack, name: str, cs: str, expected: int, work: Path) -> dict:
    from consumer.config import EventHubSettings

    d = EventHubSettings(prefetch=opts.prefetch or EventHubSettings().prefetch,
                         max_batch_size=opts.max_batch_size or EventHubSettings().max_batch_size)
    container = stack.new_container("raw")
    out = work / f"{name}.json"
    cmd = [sys.executable, "-m", "bench.raw_consumer", "--hub-cs", cs,
           "--checkpoint-cs", stack.azurite.connection_string,
           "--container", container, "--out", str(out), "--expected", str(expected),
           "--lb-interval", str(opts.lb_interval), "--ownership-expiration", str(d.ownership_expiration_s),
           "--max-wait-time", str(d.max_wait_time_s), "--timeout", str(opts.timeout),
           "--prefetch", str(d.prefetch), "--max-batch-size", str(d.max_batch_size)]
    cpu = stack.cpu()
    proc = Launched(name, cmd, child_env(), work)  # cwd = the checkout, so `-m bench...` resolves
    ru = proc.wait(opts.timeout + 30)
    hub_cores, azurite_cores = cpu.cores()
    try:
        r = json.loads(out.read_text())
    except (OSError, ValueError):
        r = {"count": 0, "done": None, "first_claim": None, "first_event": None}
        print(f"  ! {name} failed (rc {ru['rc']}):\n{proc.text()[-3000:]}")
    done = r["done"]
    return {
        "tool": "raw", "count": r["count"], "t0": proc.t0, "done": done, "first_claim": r["first_claim"],
        "first_event": r["first_event"], "batches": r.get("batches"),
        "eps": expected / (done - proc.t0) if done else NAN,
        "eps_claim": expected / (done - r["first_claim"]) if done else NAN,
        "cpu_s": ru["cpu_s"], "rss_mb": ru["maxrss_kib"] / 1024, "rc": ru["rc"],
        "cores": ru["cpu_s"] / (ru["end"] - ru["start"]), "hub_cores": hub_cores, "azurite_cores": azurite_cores,
    }


def run_worker(opts: WorkerOptions, stack: Stack, name: str, cs: str, s: backlog.Backlog, work: Path,
               wait_tail: bool) -> dict:
    container = stack.new_container("wrk")
    warehouse = work / f"{name}-warehouse"
    cpu = stack.cpu()
    proc = start_worker(opts, stack, name, cs, container, warehouse, work)
    hub_cores = azurite_cores = NAN
    spy = None
    if opts.profile:  # sample the worker's Python stacks (py-spy, non-blocking) while it catches up
        pyspy = Path(sys.executable).parent / "py-spy"
        spy = subprocess.Popen([str(pyspy), "record", "--pid", str(proc.child_pid), "--rate", "200", "--nonblocking",
                                "--format", "raw", "--idle", "-o", str(work / f"{name}.pyspy.txt")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    counter = RawCounter(warehouse)
    target = s.messages - s.held
    t_target = t_all = None
    cpu_at_target = NAN
    deadline = time.time() + opts.timeout
    count = 0
    while proc.alive and time.time() < deadline:
        count = counter.count()
        now = time.time()
        if t_target is None and count >= target:
            t_target = now
            cpu_at_target = cpu_of(proc.child_pid)
            hub_cores, azurite_cores = cpu.cores()
            if not wait_tail:
                break
        if count >= s.messages:
            t_all = now
            break
        time.sleep(0.1)
    if not proc.alive or t_target is None:
        print(f"  ! {name}: {count} of {target} rows after {time.time() - proc.t0:.0f}s; "
              f"log tail:\n{proc.text()[-3000:]}")
    if spy is not None:
        spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        spy.wait(30)
        print(f"    py-spy stacks (with idle): {(work / f'{name}.pyspy.txt').relative_to(ROOT)}")
    ru = proc.stop()
    claims = proc.claims()
    first_claim = claims[0] if claims else None
    if not opts.keep:
        shutil.rmtree(warehouse, ignore_errors=True)
    return {
        "tool": "worker", "count": count, "t0": proc.t0, "done": t_target, "all": t_all, "first_claim": first_claim,
        "eps": target / (t_target - proc.t0) if t_target else NAN,
        "eps_claim": target / (t_target - first_claim) if t_target and first_claim else NAN,
        "tail_s": (t_all - t_target) if t_all and t_target else None,
        "cpu_s_at_done": cpu_at_target, "cpu_s": ru["cpu_s"], "rss_mb": ru["maxrss_kib"] / 1024, "rc": ru["rc"],
        "cores": cpu_at_target / (t_target - proc.t0) if t_target else NAN,
        "hub_cores": hub_cores, "azurite_cores": azurite_cores, "log_errors": proc.log_errors(),
    }


def run(opts: WorkerOptions, stack: Stack, work: Path) -> dict:
    t = time.perf_counter()
    s = backlog.build(opts.events, opts.partitions, opts.seed, opts.payload_bytes, opts.span_hours * 3600,
                      LATENESS_S)
    print(f"\n[1] throughput: {s.messages:,} events, mean body {s.mean_bytes:,.0f} B, {opts.partitions} "
          f"partitions (sizes {', '.join(str(len(v)) for v in s.by_partition.values())}), event times over "
          f"{opts.span_hours} h up to 10 min ago; reorder buffer holds {s.held} at the end (target N-H = "
          f"{s.messages - s.held:,}) and flags {s.late:,} late; built in {time.perf_counter() - t:.1f}s", flush=True)
    print("    mix: " + ", ".join(f"{k} {v:,}" for k, v in sorted(s.mix.items())), flush=True)
    runs = []
    for r in range(opts.repeats):
        name, cs = stack.new_hub(f"tp{r}", opts.partitions)
        t = time.perf_counter()
        asyncio.run(backlog.publish(cs, s.by_partition))
        print(f"  repeat {r + 1}: published {s.messages:,} in {time.perf_counter() - t:.1f}s", flush=True)
        order = ("raw", "worker") if r % 2 == 0 else ("worker", "raw")
        pair = {}
        for tool in order:
            if tool == "raw":
                m = run_raw(opts, stack, f"{name}-raw", cs, s.messages, work)
                extra = f"received {m['count']:,} in {m['batches']} batches"
            else:
                m = run_worker(opts, stack, f"{name}-worker", cs, s, work, wait_tail=r == 0 and not opts.skip_tail)
                extra = (f"raw_events rows {m['count']:,}, tail (idle release of H) "
                         + (f"{m['tail_s']:.1f}s" if m.get("tail_s") is not None else "not measured")
                         + f", errors in log {m['log_errors']}")
            pair[tool] = m
            print(f"    {tool:<6} {m['eps']:>8,.0f} ev/s from start, {m['eps_claim']:>8,.0f} from first claim; "
                  f"CPU {m['cpu_s']:.1f}s, peak RSS {m['rss_mb']:.0f} MB, rc {m['rc']}; cores used until done: "
                  f"consumer {m['cores']:.2f}, hub {m['hub_cores']:.2f}, azurite {m['azurite_cores']:.2f}; {extra}",
                  flush=True)
        pair["ratio"] = pair["worker"]["eps"] / pair["raw"]["eps"]
        pair["ratio_claim"] = pair["worker"]["eps_claim"] / pair["raw"]["eps_claim"]
        print(f"    ratio worker/raw: {pair['ratio']:.2f} (from start), {pair['ratio_claim']:.2f} "
              f"(from first claim)", flush=True)
        runs.append(pair)

    def med(tool: str, key: str) -> float:
        return median(p[tool].get(key) for p in runs)

    summary = {
        "events": s.messages, "held": s.held, "mean_bytes": s.mean_bytes, "runs": runs,
        "raw_eps": med("raw", "eps"), "worker_eps": med("worker", "eps"),
        "raw_eps_claim": med("raw", "eps_claim"), "worker_eps_claim": med("worker", "eps_claim"),
        "raw_cpu_us": statistics.median(p["raw"]["cpu_s"] / s.messages * 1e6 for p in runs),
        "worker_cpu_us": statistics.median(p["worker"]["cpu_s_at_done"] / s.messages * 1e6 for p in runs),
        "raw_rss": med("raw", "rss_mb"), "worker_rss": med("worker", "rss_mb"),
        "tail_s": med("worker", "tail_s"),
        "raw_cores": med("raw", "cores"), "worker_cores": med("worker", "cores"),
        "stack_cores": max(p[t]["hub_cores"] + p[t]["azurite_cores"] for p in runs for t in ("raw", "worker")),
        "ratios": [p["ratio"] for p in runs], "ratios_claim": [p["ratio_claim"] for p in runs],
    }
    summary["ratio"] = summary["worker_eps"] / summary["raw_eps"]
    summary["ratio_claim"] = summary["worker_eps_claim"] / summary["raw_eps_claim"]
    return summary


def summary_lines(tp: dict) -> list[str]:
    return [
        f"  throughput: raw {tp['raw_eps']:,.0f} ev/s, worker {tp['worker_eps']:,.0f} ev/s from process start "
        f"-> ratio {tp['ratio']:.2f} (per repeat {', '.join(f'{x:.2f}' for x in tp['ratios'])}); from first "
        f"claim raw {tp['raw_eps_claim']:,.0f}, worker {tp['worker_eps_claim']:,.0f} -> ratio "
        f"{tp['ratio_claim']:.2f}; target >= 0.8",
        f"              CPU per event (whole process): raw {tp['raw_cpu_us']:.0f} us, worker "
        f"{tp['worker_cpu_us']:.0f} us; hub + Azurite <= {tp['stack_cores']:.2f} cores; "
        f"peak RSS raw {tp['raw_rss']:.0f} MB, worker {tp['worker_rss']:.0f} MB",
    ]


def markdown(opts: WorkerOptions, tp: dict) -> list[str]:
    tail = ""
    if not is_nan(tp["tail_s"]):
        tail = f" (+{tp['tail_s']:.0f} s until those H are released by the idle rule)"
    header = ["consumer", "events/s from process start", "from first claim", "CPU us/event", "cores",
              "peak RSS MB"]
    rows = [
        ["raw SDK `receive_batch` + BlobCheckpointStore (count; checkpoint per batch)", f"{tp['raw_eps']:,.0f}",
         f"{tp['raw_eps_claim']:,.0f}", f"{tp['raw_cpu_us']:,.0f}", f"{tp['raw_cores']:.2f}", f"{tp['raw_rss']:,.0f}"],
        ["`amlwh run` (decode, reorder, Parquet, checkpoint)", f"{tp['worker_eps']:,.0f}",
         f"{tp['worker_eps_claim']:,.0f}", f"{tp['worker_cpu_us']:,.0f}", f"{tp['worker_cores']:.2f}",
         f"{tp['worker_rss']:,.0f}"],
    ]
    return [
        f"**Throughput**, hub -> durable Parquet: {tp['events']:,} events (~{tp['mean_bytes']:,.0f} B bodies, "
        f"{opts.partitions} partitions) published before the consumer starts and read from earliest; "
        f"median of {opts.repeats} alternating repeat(s):", "",
        *md_table(header, rows),
        "",
        f"Ratio worker / raw: **{tp['ratio']:.2f}** from process start (per repeat: "
        + ", ".join(f"{x:.2f}" for x in tp["ratios"]) + f"), {tp['ratio_claim']:.2f} from the first claim; "
        f"target >= 0.8. The worker counts as done when raw_events holds N - H rows, H = {tp['held']} events "
        f"within max_lateness of their partition's newest event time{tail}. Hub and Azurite used "
        f"<= {tp['stack_cores']:.2f} cores.", ""]
