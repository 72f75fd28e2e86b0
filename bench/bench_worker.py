"""Live worker (`amlwh run`) on the local hub + Azurite: throughput vs raw SDK, peak RSS, latency.

    .venv/bin/python bench/bench_worker.py               # full run (~10 minutes)
    .venv/bin/python bench/bench_worker.py --quick       # smoke run (< 2 minutes)
    .venv/bin/python bench/bench_worker.py --markdown    # also print a README-ready block
    .venv/bin/python bench/bench_worker.py --only throughput --repeats 5 --events 150000
    .venv/bin/python bench/bench_worker.py --only throughput --profile   # + py-spy stacks

One LocalHub process and one Azurite process serve the whole run; every measurement gets a
fresh event hub, checkpoint container and warehouse directory. The worker always runs as a
real process (`python -m consumer run`, cwd = repo) with the production defaults, except
`[eventhub] load_balancing_interval_s` = 1 s (the balanced strategy claims one partition per
interval, so at the default 10 s a lone worker would need 30 s to claim 4 partitions) and
what a measurement states. Consumers and producers run under a tiny launcher (bench/launch.py)
that reports their peak RSS and CPU time from os.wait4.

1. Throughput ratio. N synthetic events are published once per repeat into a fresh 4-partition
   hub: devstack.synth run lifecycles + model/drift events (~1.5 KB mean body, 30% one-element
   JSON arrays, 20% CloudEvents), shuffled within 3 events (synth.disorder) with 1% moved to a
   random later position (hours late), no redeliveries (one message = one raw_events row);
   event times span 24 h ending 10 minutes ago (a backlog); partition = crc32(subject) % P,
   i.e. keyed by subject like `amlwh publish --partition-key subject`. Then, alternating
   A B / B A, each from earliest with its own fresh checkpoint container:
     A. raw SDK: a fresh process running EventHubConsumerClient.receive_batch with a
        BlobCheckpointStore, the worker's prefetch, max_batch_size, max_wait_time and
        balanced load balancing at the same interval; it only counts, and awaits
        `update_checkpoint(last event)` once per non-empty batch, as a minimal consumer
        would. Done when it has received all N.
     B. `amlwh run`, hub -> durable Parquet. Done when raw_events/*/*.parquet hold N - H rows
        (summed from Parquet footers, polled every 0.1 s). H = the events the reorder buffer
        holds by design at the end of a finite stream: per partition those within
        max_lateness of its newest event time, released only once the partition has been
        idle max_lateness s; H is computed by replaying the stream through
        transforms.ordering.ReorderBuffer. Repeat 1 also waits for all N (the idle release).
   events/s = events / seconds from process start (interpreter start-up and imports
   included) and from the first partition claim. Ratio = worker / raw, per repeat and of
   the medians (issue target >= 0.8). The hub's and Azurite's CPU is printed too, to show
   the machine was not saturated by them.
2. Peak RSS with 32 partitions under sustained load. One worker claims all 32 partitions
   (the bench waits for the 32 claims), then a producer process sends live traffic (the same
   synth mix with eventTime = send time, keyed by subject) at --rss-rate events/s for
   --rss-seconds. RSS is polled every 0.5 s (psutil) while loaded and while the buffers drain
   afterwards; the lifetime peak (incl. that drain and the SIGTERM shutdown) is os.wait4's.
   Live event times matter: the reorder buffer holds ~rate x max_lateness events, so the
   bench also fits RSS against events in flight (sent - durable) to give KB per held event.
   Issue target < 300 MB.
3. Latency enqueued -> visible in `runs`. A 4-partition hub; a producer sends live traffic
   (eventTime = send time) at --latency-rate events/s. The sample is every run whose final
   status was enqueued in a steady window (after --latency-warmup s, --latency-window s
   long); traffic goes on for max_lateness + 10 s after the window, so no sampled event waits
   on the idle rule. Every 0.5 s the bench opens consumer.query.connect and reads `SELECT
   run_id, status FROM runs`; latency = start of the first poll showing the run with its final
   status - the hub's enqueued time of the first event with that status (run_events.enqueued_at).
   Also reported: enqueued -> decoded by the worker (run_events.ingested_at, stamped when the
   batch is decoded, before the reorder buffer) and enqueued -> committed (ctime of the
   committed Parquet file: the rename that commits it, after the buffer released the event).
   Buffered events are visible before they are committed, through the worker's provisional
   files (consumer/provisional.py); `runs` reads both. Measured at
   the defaults (max_lateness 30 s, writer max_seconds 2 s) and with
   AMLWH_ORDERING__MAX_LATENESS_S=2. Issue target p95 < 5 s.

Benchmarks print figures and ratios; they never assert. The machine is shared and noisy:
quote medians.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import zlib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
THIS = Path(__file__).resolve()
sys.path.insert(0, str(ROOT))

from bench.launch import Launched  # noqa: E402

CLAIM_RE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) INFO amlwh\.worker: partition (\S+) claimed",
                      re.M)


# ----------------------------------------------------------------------------- processes
class LaunchedWorker(Launched):
    """`amlwh run` under the launcher, plus its partition claims read from its log."""

    def claims(self) -> list[float]:
        """Wall times of the worker's "partition N claimed" log lines (asctime is local time)."""
        return sorted(datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
                      for m in CLAIM_RE.finditer(self.text()))

    def wait_for_claims(self, count: int, timeout: float) -> list[float]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.alive:
            claims = self.claims()
            if len(claims) >= count:
                return claims
            time.sleep(0.2)
        raise RuntimeError(f"{self.name}: {len(self.claims())} of {count} partitions claimed after "
                           f"{timeout:.0f}s; log tail:\n{self.text()[-3000:]}")


def worker_env(hub_cs: str, checkpoint_cs: str, container: str, warehouse: Path, lb_interval: float,
               **extra: str) -> dict:
    """Production defaults, except the load-balancing interval and `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMLWH_")}
    env.update(EXTRA_WORKER_ENV)
    env.update(PYTHONPATH=str(ROOT), AMLWH_EVENTHUB__CONNECTION_STRING=hub_cs,
               AMLWH_CHECKPOINT__CONNECTION_STRING=checkpoint_cs, AMLWH_CHECKPOINT__CONTAINER=container,
               AMLWH_WAREHOUSE__PATH=str(warehouse),
               AMLWH_EVENTHUB__LOAD_BALANCING_INTERVAL_S=str(lb_interval))
    env.update(extra)
    return env


WORKER_CMD = [sys.executable, "-m", "consumer"]  # --worker-cmd replaces it (A/B a patched worker)
EXTRA_WORKER_ENV: dict[str, str] = {}  # --prefetch / --max-batch-size (applied to the raw baseline too)


def start_worker(name: str, env: dict, work: Path) -> LaunchedWorker:
    return LaunchedWorker(name, WORKER_CMD + ["run"], env, work)


def rss_tree(pid: int) -> int:
    import psutil

    try:
        proc = psutil.Process(pid)
        return proc.memory_info().rss + sum(c.memory_info().rss for c in proc.children(recursive=True))
    except psutil.Error:
        return 0


def cpu_of(pid: int) -> float:
    import psutil

    try:
        t = psutil.Process(pid).cpu_times()
        return t.user + t.system
    except psutil.Error:
        return float("nan")


class StackCPU:
    """CPU seconds of the hub and Azurite processes (and their children) between two points."""

    def __init__(self, *pids: int):
        self.pids = pids
        self.t0, self.c0 = time.time(), self._cpu()

    def _cpu(self) -> list[float]:
        import psutil

        out = []
        for pid in self.pids:
            total = 0.0
            try:
                proc = psutil.Process(pid)
                for p in [proc] + proc.children(recursive=True):
                    t = p.cpu_times()
                    total += t.user + t.system
            except psutil.Error:
                pass
            out.append(total)
        return out

    def cores(self) -> list[float]:
        """Cores used by each process since construction."""
        c1, dt = self._cpu(), time.time() - self.t0
        return [(b - a) / dt for a, b in zip(self.c0, c1)]


class RawCounter:
    """Rows committed to raw_events, summed from the footers of files not seen before."""

    def __init__(self, warehouse: Path):
        self.folder = warehouse / "raw_events"
        self.rows: dict[str, int] = {}

    def count(self) -> int:
        import pyarrow.parquet as pq

        if self.folder.is_dir():
            for path in self.folder.glob("*/*.parquet"):
                key = str(path)
                if key not in self.rows:
                    self.rows[key] = pq.read_metadata(path).num_rows
        return sum(self.rows.values())


def new_container(azurite, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:10]}"
    azurite.create_container(name)
    return name


def partition_of(subject: str | None, partitions: int) -> int:
    return zlib.crc32((subject or "").encode()) % partitions


# ----------------------------------------------------------------------------- streams
@dataclass
class HistoricalStream:
    by_partition: dict[str, list[bytes]]
    messages: int
    held: int  # held by the reorder buffer at the end until the partition idles
    late: int  # flagged late by the reorder buffer
    mean_bytes: float
    mix: dict[str, int] = field(default_factory=dict)


def historical_stream(events: int, partitions: int, seed: int, payload_bytes: int, span_s: int,
                      lateness_s: float) -> HistoricalStream:
    from devstack.synth import disorder, generate
    from transforms.decode import DecodeRules, decode_body
    from transforms.ordering import ReorderBuffer
    from transforms.records import AML_EVENT_TYPES, Origin

    rules = DecodeRules.build([], list(AML_EVENT_TYPES))

    def build(start_us: int) -> list[bytes]:
        stream = generate(events // 6 + 50, seed=seed, start_us=start_us, span_s=span_s,
                          payload_bytes=payload_bytes)
        # window=3: at this density (~0.7 events/s of event time) local shuffles stay within
        # a few seconds, below max_lateness, like Event Grid's delivery disorder.
        bodies = disorder(stream.bodies, seed=seed + 1, dup_share=0.0, late_share=0.0, window=3)
        # ~1% hours-late events, each moved to a random *later* position. (synth.disorder's
        # late_share may insert an event before its original position, i.e. hours early:
        # that pushes its partition's watermark ahead and flags everything up to its
        # original position late, which is not what a live hub looks like.)
        rng = random.Random(seed + 2)
        for i in sorted(rng.sample(range(len(bodies)), len(bodies) // 100), reverse=True):
            bodies.insert(rng.randrange(i + 1, len(bodies) + 1), bodies.pop(i))
        return bodies[:events]

    # A backlog: every event time in the past. Runs created near the end of the span end
    # hours later, so generate once to find the newest time, then again shifted so that it
    # is 10 minutes ago (the same seed gives the same offsets). A future event time would
    # be ordered at enqueued + max_future_skew and make every other event late.
    newest = max(decode_body(b, Origin("eventhub"), rules).events[0].envelope.event_time_us
                 for b in build(0))
    bodies = build(time.time_ns() // 1000 - 600_000_000 - newest)
    buffers = [ReorderBuffer(int(lateness_s * 1e6), 10**9) for _ in range(partitions)]
    by_partition: dict[str, list[bytes]] = {str(p): [] for p in range(partitions)}
    mix: dict[str, int] = {}
    for body in bodies:
        decoded = decode_body(body, Origin("eventhub"), rules)
        if len(decoded.events) != 1 or decoded.dead_letters:
            raise RuntimeError(f"devstack.synth produced a body that is not one event: {body[:200]!r}")
        event = decoded.events[0]
        env = event.envelope
        p = partition_of(env.subject, partitions)
        buffers[p].push(None, subject=env.subject, event_time_us=env.event_time_us, rank=0,
                        sequence=len(by_partition[str(p)]), now_us=0)
        by_partition[str(p)].append(body)
        kind = env.event_type.rsplit(".", 1)[-1]
        mix[kind] = mix.get(kind, 0) + 1
    held = late = 0
    for buffer in buffers:
        buffer.release(0)
        held += len(buffer)
        late += buffer.stats.late
    return HistoricalStream(by_partition, len(bodies), held, late, sum(map(len, bodies)) / len(bodies), mix)


async def publish_partitions(cs: str, by_partition: dict[str, list[bytes]]) -> None:
    from azure.eventhub.aio import EventHubProducerClient

    from devstack.sdk_helpers import send_batched

    producer = EventHubProducerClient.from_connection_string(cs)
    async with producer:
        for pid, bodies in by_partition.items():
            await send_batched(producer, bodies, partition_id=pid)


# ----------------------------------------------------------------------------- child: raw SDK
async def _raw_consume(a: argparse.Namespace) -> dict:
    from azure.eventhub.aio import EventHubConsumerClient
    from azure.eventhub.extensions.checkpointstoreblobaio import BlobCheckpointStore

    out = {"count": 0, "batches": 0, "first_claim": None, "first_event": None, "done": None}
    done = asyncio.Event()
    store = BlobCheckpointStore.from_connection_string(a.checkpoint_cs, container_name=a.container)
    client = EventHubConsumerClient.from_connection_string(
        a.hub_cs, consumer_group="$Default", checkpoint_store=store,
        load_balancing_strategy="balanced", load_balancing_interval=a.lb_interval,
        partition_ownership_expiration_interval=a.ownership_expiration)

    async def on_init(_context) -> None:
        out["first_claim"] = out["first_claim"] or time.time()

    async def on_batch(context, events) -> None:
        if not events:
            return
        if out["first_event"] is None:
            out["first_event"] = time.time()
        out["count"] += len(events)
        out["batches"] += 1
        await context.update_checkpoint(events[-1])
        if out["count"] >= a.expected and out["done"] is None:
            out["done"] = time.time()
            done.set()

    async with store, client:
        task = asyncio.create_task(client.receive_batch(
            on_batch, max_batch_size=a.max_batch_size, max_wait_time=a.max_wait_time, prefetch=a.prefetch,
            starting_position="-1", on_partition_initialize=on_init))
        waiter = asyncio.create_task(done.wait())
        await asyncio.wait({task, waiter}, timeout=a.timeout, return_when=asyncio.FIRST_COMPLETED)
        await client.close()
        for t in (task, waiter):
            t.cancel()
        await asyncio.gather(task, waiter, return_exceptions=True)
    return out


def raw_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="bench_worker.py _raw")
    for name in ("hub_cs", "checkpoint_cs", "container", "out"):
        p.add_argument(f"--{name.replace('_', '-')}", required=True)
    p.add_argument("--expected", type=int, required=True)
    for name in ("lb_interval", "ownership_expiration", "max_wait_time", "timeout"):
        p.add_argument(f"--{name.replace('_', '-')}", type=float, required=True)
    for name in ("prefetch", "max_batch_size"):
        p.add_argument(f"--{name.replace('_', '-')}", type=int, required=True)
    a = p.parse_args(argv)
    out = asyncio.run(_raw_consume(a))
    Path(a.out).write_text(json.dumps(out))
    return 0


# ----------------------------------------------------------------------------- child: live producer
async def _produce(a: argparse.Namespace) -> dict:
    import orjson
    from azure.eventhub import EventData
    from azure.eventhub.aio import EventHubProducerClient

    from devstack.sdk_helpers import send_batched
    from devstack.synth import _iso, generate

    total = int(a.rate * a.seconds) + 1
    docs = []
    runs = total // 5 + 50
    while len(docs) < total:  # run lifecycles in (original) event-time order, times rewritten below
        stream = generate(runs, seed=a.seed + len(docs), payload_bytes=a.payload_bytes)
        docs.extend(orjson.loads(b) for b in stream.bodies)
    rng = random.Random(a.seed)
    plan = []
    for doc in docs[:total]:
        env = doc[0] if isinstance(doc, list) else doc
        plan.append((doc, env, "eventTime" if "eventTime" in env else "time",
                     str(partition_of(env.get("subject"), a.partitions))))
    producer = EventHubProducerClient.from_connection_string(a.hub_cs)
    sent = 0
    behind = 0.0
    tick = 0.05 if a.rate <= 1000 else 0.1

    async with producer:
        await producer.get_eventhub_properties()  # connect before the clock starts
        start = time.time()
        next_tick = start
        while True:
            now = time.time()
            if now - start >= a.seconds:
                break
            due = min(total, int(a.rate * (now - start)) + 1) - sent
            if due > 0:
                now_us = time.time_ns() // 1000
                groups: dict[str, list] = {}
                for k in range(due):
                    doc, env, key, pid = plan[sent + k]
                    env[key] = _iso(now_us + k, rng)  # event time = send time
                    groups.setdefault(pid, []).append(EventData(orjson.dumps(doc)))
                await asyncio.gather(*(send_batched(producer, events, partition_id=pid)
                                       for pid, events in groups.items()))
                sent += due
            behind = max(behind, (time.time() - start) - sent / a.rate)
            next_tick += tick
            await asyncio.sleep(max(0.0, next_tick - time.time()))
        end = time.time()
    return {"start": start, "end": end, "sent": sent, "rate": sent / (end - start), "max_behind_s": behind}


def produce_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="bench_worker.py _produce")
    p.add_argument("--hub-cs", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--partitions", type=int, required=True)
    p.add_argument("--rate", type=float, required=True)
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--seed", type=int, default=5)
    p.add_argument("--payload-bytes", type=int, default=1620)
    a = p.parse_args(argv)
    out = asyncio.run(_produce(a))
    Path(a.out).write_text(json.dumps(out))
    return 0


def start_producer(name: str, hub_cs: str, partitions: int, rate: float, seconds: float, work: Path,
                   seed: int, payload_bytes: int) -> tuple[Launched, Path]:
    out = work / f"{name}.json"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, str(THIS), "_produce", "--hub-cs", hub_cs, "--out", str(out),
           "--partitions", str(partitions), "--rate", str(rate), "--seconds", str(seconds),
           "--seed", str(seed), "--payload-bytes", str(payload_bytes)]
    return Launched(name, cmd, env, work), out


# ----------------------------------------------------------------------------- 1. throughput
def run_raw(name: str, cs: str, azurite, expected: int, args, work: Path) -> dict:
    from consumer.config import EventHubSettings

    d = EventHubSettings(prefetch=args.prefetch or EventHubSettings().prefetch,
                         max_batch_size=args.max_batch_size or EventHubSettings().max_batch_size)
    container = new_container(azurite, "raw")
    out = work / f"{name}.json"
    cmd = [sys.executable, str(THIS), "_raw", "--hub-cs", cs, "--checkpoint-cs", azurite.connection_string,
           "--container", container, "--out", str(out), "--expected", str(expected),
           "--lb-interval", str(args.lb_interval), "--ownership-expiration", str(d.ownership_expiration_s),
           "--max-wait-time", str(d.max_wait_time_s), "--timeout", str(args.timeout),
           "--prefetch", str(d.prefetch), "--max-batch-size", str(d.max_batch_size)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMLWH_")}
    stack = StackCPU(args.hub_pid, args.azurite_pid)
    proc = Launched(name, cmd, env, work)
    ru = proc.wait(args.timeout + 30)
    hub_cores, azurite_cores = stack.cores()
    try:
        r = json.loads(out.read_text())
    except (OSError, ValueError):
        r = {"count": 0, "done": None, "first_claim": None, "first_event": None}
        print(f"  ! {name} failed (rc {ru['rc']}):\n{proc.text()[-3000:]}")
    done = r["done"]
    return {
        "tool": "raw", "count": r["count"], "t0": proc.t0, "done": done, "first_claim": r["first_claim"],
        "first_event": r["first_event"], "batches": r.get("batches"),
        "eps": expected / (done - proc.t0) if done else float("nan"),
        "eps_claim": expected / (done - r["first_claim"]) if done else float("nan"),
        "cpu_s": ru["cpu_s"], "rss_mb": ru["maxrss_kib"] / 1024, "rc": ru["rc"],
        "cores": ru["cpu_s"] / (ru["end"] - ru["start"]), "hub_cores": hub_cores, "azurite_cores": azurite_cores,
    }


def run_worker_tp(name: str, cs: str, azurite, s: HistoricalStream, args, work: Path, wait_tail: bool) -> dict:
    container = new_container(azurite, "wrk")
    warehouse = work / f"{name}-warehouse"
    stack = StackCPU(args.hub_pid, args.azurite_pid)
    proc = start_worker(name, worker_env(cs, azurite.connection_string, container, warehouse,
                                         args.lb_interval), work)
    hub_cores = azurite_cores = float("nan")
    spy = None
    if args.profile:  # sample the worker's Python stacks (py-spy, non-blocking) while it catches up
        pyspy = Path(sys.executable).parent / "py-spy"
        spy = subprocess.Popen([str(pyspy), "record", "--pid", str(proc.child_pid), "--rate", "200", "--nonblocking",
                                "--format", "raw", "--idle", "-o", str(work / f"{name}.pyspy.txt")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    counter = RawCounter(warehouse)
    target = s.messages - s.held
    t_target = t_all = None
    cpu_at_target = float("nan")
    deadline = time.time() + args.timeout
    count = 0
    while proc.alive and time.time() < deadline:
        count = counter.count()
        now = time.time()
        if t_target is None and count >= target:
            t_target = now
            cpu_at_target = cpu_of(proc.child_pid)
            hub_cores, azurite_cores = stack.cores()
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
    shutil.rmtree(warehouse, ignore_errors=True) if not args.keep else None
    return {
        "tool": "worker", "count": count, "t0": proc.t0, "done": t_target, "all": t_all, "first_claim": first_claim,
        "eps": target / (t_target - proc.t0) if t_target else float("nan"),
        "eps_claim": target / (t_target - first_claim) if t_target and first_claim else float("nan"),
        "tail_s": (t_all - t_target) if t_all and t_target else None,
        "cpu_s_at_done": cpu_at_target, "cpu_s": ru["cpu_s"], "rss_mb": ru["maxrss_kib"] / 1024, "rc": ru["rc"],
        "cores": cpu_at_target / (t_target - proc.t0) if t_target else float("nan"),
        "hub_cores": hub_cores, "azurite_cores": azurite_cores,
        "log_errors": sum(1 for line in proc.text().splitlines() if " ERROR " in line or "Traceback" in line),
    }


def throughput(args, hub, azurite, work: Path) -> dict:
    t = time.perf_counter()
    s = historical_stream(args.events, args.partitions, args.seed, args.payload_bytes, args.span_hours * 3600,
                          30.0)
    print(f"\n[1] throughput: {s.messages:,} events, mean body {s.mean_bytes:,.0f} B, {args.partitions} "
          f"partitions (sizes {', '.join(str(len(v)) for v in s.by_partition.values())}), event times over "
          f"{args.span_hours} h up to 10 min ago; reorder buffer holds {s.held} at the end (target N-H = "
          f"{s.messages - s.held:,}) and flags {s.late:,} late; built in {time.perf_counter() - t:.1f}s", flush=True)
    print("    mix: " + ", ".join(f"{k} {v:,}" for k, v in sorted(s.mix.items())), flush=True)
    runs = []
    for r in range(args.repeats):
        name = f"tp{r}-{uuid.uuid4().hex[:6]}"
        hub.create_hub(name, args.partitions)
        cs = hub.connection_string(name)
        t = time.perf_counter()
        asyncio.run(publish_partitions(cs, s.by_partition))
        print(f"  repeat {r + 1}: published {s.messages:,} in {time.perf_counter() - t:.1f}s", flush=True)
        order = ("raw", "worker") if r % 2 == 0 else ("worker", "raw")
        pair = {}
        for tool in order:
            if tool == "raw":
                m = run_raw(f"{name}-raw", cs, azurite, s.messages, args, work)
            else:
                m = run_worker_tp(f"{name}-worker", cs, azurite, s, args, work, wait_tail=r == 0 and not args.skip_tail)
            pair[tool] = m
            extra = (f"raw_events rows {m['count']:,}, tail (idle release of H) "
                     + (f"{m['tail_s']:.1f}s" if m.get("tail_s") is not None else "not measured")
                     + f", errors in log {m['log_errors']}") if tool == "worker" else \
                    f"received {m['count']:,} in {m['batches']} batches"
            print(f"    {tool:<6} {m['eps']:>8,.0f} ev/s from start, {m['eps_claim']:>8,.0f} from first claim; "
                  f"CPU {m['cpu_s']:.1f}s, peak RSS {m['rss_mb']:.0f} MB, rc {m['rc']}; cores used until done: "
                  f"consumer {m['cores']:.2f}, hub {m['hub_cores']:.2f}, azurite {m['azurite_cores']:.2f}; {extra}",
                  flush=True)
        pair["ratio"] = pair["worker"]["eps"] / pair["raw"]["eps"]
        pair["ratio_claim"] = pair["worker"]["eps_claim"] / pair["raw"]["eps_claim"]
        print(f"    ratio worker/raw: {pair['ratio']:.2f} (from start), {pair['ratio_claim']:.2f} "
              f"(from first claim)", flush=True)
        runs.append(pair)

    def med(tool, key):
        values = [p[tool][key] for p in runs if p[tool].get(key) is not None]
        return statistics.median(values) if values else float("nan")

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


# ----------------------------------------------------------------------------- 2. RSS, 32 partitions
def rss(args, hub, azurite, work: Path) -> dict:
    print(f"\n[2] peak RSS: {args.rss_partitions} partitions, live traffic {args.rss_rate:,.0f} events/s for "
          f"{args.rss_seconds:.0f}s (eventTime = send time), default settings", flush=True)
    name = f"rss-{uuid.uuid4().hex[:6]}"
    hub.create_hub(name, args.rss_partitions)
    cs = hub.connection_string(name)
    warehouse = work / f"{name}-warehouse"
    worker = start_worker(name, worker_env(cs, azurite.connection_string, new_container(azurite, "rss"),
                                           warehouse, args.lb_interval), work)
    load: list[tuple[float, float, int]] = []  # (seconds into the load, RSS MB, durable rows)
    drain: list[float] = []
    prod = {"sent": 0, "rate": 0.0, "max_behind_s": 0.0, "start": time.time()}
    prod_cpu = float("nan")
    idle_rss = load_cpu = float("nan")
    counter = RawCounter(warehouse)
    try:
        claims = worker.wait_for_claims(args.rss_partitions, args.rss_partitions * args.lb_interval * 3 + 30)
        time.sleep(2)
        idle_rss = rss_tree(worker.child_pid) / 2**20
        print(f"  worker claimed {len(claims)} partitions in {claims[-1] - worker.t0:.1f}s; RSS idle "
              f"{idle_rss:.0f} MB", flush=True)
        producer, report = start_producer(f"{name}-producer", cs, args.rss_partitions, args.rss_rate,
                                          args.rss_seconds, work, seed=args.seed + 100,
                                          payload_bytes=args.payload_bytes)
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
        drain_s = time.time() - t0 - (prod["end"] - prod["start"]) if "end" in prod else float("nan")
    finally:
        ru = worker.stop(90)
    # RSS against the events in flight (sent, not yet durable: mostly held by the reorder
    # buffers) while loaded: the slope is the worker's memory per buffered event.
    offset = prod["start"] - t0 if "start" in prod else 0.0
    points = [(max(0.0, (t - offset)) * prod["rate"] - durable, mb) for t, mb, durable in load if t - offset > 2]
    slope = float("nan")
    if len(points) >= 3 and len({x for x, _ in points}) > 1:
        slope = statistics.linear_regression([x for x, _ in points], [y for _, y in points]).slope * 1024
    result = {
        "partitions": args.rss_partitions, "rate": prod["rate"], "seconds": args.rss_seconds, "sent": prod["sent"],
        "idle_rss": idle_rss, "load_peak_rss": max((mb for _, mb, _ in load), default=float("nan")),
        "end_load_rss": load[-1][1] if load else float("nan"), "drain_peak_rss": max(drain, default=float("nan")),
        "peak_rss": ru["maxrss_kib"] / 1024, "rc": ru["rc"], "load_cpu_cores": load_cpu,
        "in_flight_max": max((x for x, _ in points), default=0), "kb_per_in_flight": slope,
        "durable_at_end": load[-1][2] if load else 0, "drained": counter.count(), "drain_s": drain_s,
        "producer_behind_s": prod["max_behind_s"],
        "errors": sum(1 for line in worker.text().splitlines() if " ERROR " in line or "Traceback" in line),
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
    if not args.keep:
        shutil.rmtree(warehouse, ignore_errors=True)
    return result


# ----------------------------------------------------------------------------- 3. latency
def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    k = (len(values) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def latency(args, hub, azurite, work: Path, lateness: float | None) -> dict:
    from consumer.config import OrderingSettings
    from consumer.query.connection import connect, execute

    effective = OrderingSettings().max_lateness_s if lateness is None else lateness
    label = "default" if lateness is None else f"MAX_LATENESS_S={lateness:g}"
    seconds = args.latency_warmup + args.latency_window + effective + 10
    print(f"\n[3] latency ({label}: max_lateness {effective:g}s): 4 partitions, live traffic "
          f"{args.latency_rate:,.0f} events/s for {seconds:.0f}s, sample = runs whose final status was enqueued in "
          f"[{args.latency_warmup:g}s, {args.latency_warmup + args.latency_window:g}s)", flush=True)
    name = f"lat-{uuid.uuid4().hex[:6]}"
    hub.create_hub(name, 4)
    cs = hub.connection_string(name)
    warehouse = work / f"{name}-warehouse"
    extra = {} if lateness is None else {"AMLWH_ORDERING__MAX_LATENESS_S": str(lateness)}
    worker = start_worker(name, worker_env(cs, azurite.connection_string, new_container(azurite, "lat"),
                                           warehouse, args.lb_interval, **extra), work)
    seen: dict[tuple[str, str], float] = {}
    poll_s: list[float] = []
    try:
        worker.wait_for_claims(4, 4 * args.lb_interval * 3 + 30)
        producer, report = start_producer(f"{name}-producer", cs, 4, args.latency_rate, seconds, work,
                                          seed=args.seed + 200, payload_bytes=args.payload_bytes)
        stop_at = None
        while worker.alive:
            t = time.time()
            if stop_at is None and not producer.alive:
                stop_at = t + 3
            if stop_at is not None and t >= stop_at:
                break
            con = connect(warehouse)
            try:
                for run_id, status in execute(con, "SELECT run_id, status FROM runs").fetchall():
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
    rows = con.execute(f"""
        WITH firsts AS (
            SELECT run_id, status, enqueued_at, ingested_at, filename,
                   row_number() OVER (PARTITION BY run_id, status ORDER BY enqueued_at, sequence_number) AS rn
            FROM read_parquet('{glob}', filename = true)
        )
        SELECT r.run_id, r.status, f.enqueued_at, f.ingested_at, f.filename
        FROM runs r JOIN firsts f ON f.run_id = r.run_id AND f.status = r.status AND f.rn = 1
    """).fetchall()
    con.close()
    lo = prod["start"] + args.latency_warmup
    hi = lo + args.latency_window
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
    if not args.keep:
        shutil.rmtree(warehouse, ignore_errors=True)
    return result


# ----------------------------------------------------------------------------- report
def versions() -> str:
    import platform
    from importlib.metadata import version

    names = ("azure-eventhub", "azure-eventhub-checkpointstoreblob-aio", "azure-storage-blob", "pyarrow",
             "duckdb", "pydantic", "orjson")
    parts = [f"python {platform.python_version()}"]
    for n in names:
        try:
            parts.append(f"{n} {version(n)}")
        except Exception:
            pass
    try:
        azurite = json.loads((ROOT / ".tools/azurite/node_modules/azurite/package.json").read_text())["version"]
        parts.append(f"azurite {azurite}")
    except (OSError, ValueError, KeyError):
        pass
    return ", ".join(parts)


def markdown(args, machine: str, vers: str, tp: dict | None, mem: dict | None, lats: list[dict]) -> str:
    knobs = [f"`load_balancing_interval_s = {args.lb_interval:g}`"]
    if args.prefetch:
        knobs.append(f"`prefetch = {args.prefetch}` (raw SDK too)")
    if args.max_batch_size:
        knobs.append(f"`max_batch_size = {args.max_batch_size}` (raw SDK too)")
    out = [f"`bench/bench_worker.py` on {machine}; {vers}. The worker runs as a process with the production "
           f"defaults except {', '.join(knobs)}; local hub + Azurite on the same machine.", ""]
    if tp:
        tail = ""
        if tp["tail_s"] == tp["tail_s"]:  # not NaN
            tail = f" (+{tp['tail_s']:.0f} s until those H are released by the idle rule)"
        out += [
            f"**Throughput**, hub -> durable Parquet: {tp['events']:,} events (~{tp['mean_bytes']:,.0f} B bodies, "
            f"{args.partitions} partitions) published before the consumer starts and read from earliest; "
            f"median of {args.repeats} alternating repeat(s):", "",
            "| consumer | events/s from process start | from first claim | CPU us/event | cores | peak RSS MB |",
            "|---|---:|---:|---:|---:|---:|",
            f"| raw SDK `receive_batch` + BlobCheckpointStore (count; checkpoint per batch) | "
            f"{tp['raw_eps']:,.0f} | {tp['raw_eps_claim']:,.0f} | {tp['raw_cpu_us']:,.0f} | {tp['raw_cores']:.2f} | "
            f"{tp['raw_rss']:,.0f} |",
            f"| `amlwh run` (decode, reorder, Parquet, checkpoint) | {tp['worker_eps']:,.0f} | "
            f"{tp['worker_eps_claim']:,.0f} | {tp['worker_cpu_us']:,.0f} | {tp['worker_cores']:.2f} | "
            f"{tp['worker_rss']:,.0f} |",
            "",
            f"Ratio worker / raw: **{tp['ratio']:.2f}** from process start (per repeat: "
            + ", ".join(f"{x:.2f}" for x in tp["ratios"]) + f"), {tp['ratio_claim']:.2f} from the first claim; "
            f"target >= 0.8. The worker counts as done when raw_events holds N - H rows, H = {tp['held']} events "
            f"within max_lateness of their partition's newest event time{tail}. Hub and Azurite used "
            f"<= {tp['stack_cores']:.2f} cores.", ""]
    if mem:
        out += [
            f"**Peak RSS**, one worker owning {mem['partitions']} partitions, live traffic (eventTime = send time) at "
            f"{mem['rate']:,.0f} events/s for {mem['seconds']:.0f} s, default max_lateness 30 s:", "",
            "| idle, 32 partitions claimed | under load (polled peak) | events in flight at end of load | "
            "RSS per in-flight event | drain after load (polled peak) | lifetime peak (wait4) |",
            "|---:|---:|---:|---:|---:|---:|",
            f"| {mem['idle_rss']:,.0f} MB | {mem['load_peak_rss']:,.0f} MB | {mem['in_flight_max']:,.0f} | "
            f"{mem['kb_per_in_flight']:.1f} KB | {mem['drain_peak_rss']:,.0f} MB | **{mem['peak_rss']:,.0f} MB** |",
            "",
            f"Target < 300 MB. The reorder buffers hold ~rate x max_lateness events, so RSS grows with the "
            f"traffic rate; the drain peak is the idle release of all of them at once, max_lateness s after "
            f"the traffic stops. Worker CPU under load: {mem['load_cpu_cores']:.2f} cores.", ""]
    if lats:
        out += [
            f"**Latency**, event enqueued -> its run visible with that status in `runs` (polled every 0.5 s): "
            f"4 partitions, live traffic at {args.latency_rate:,.0f} events/s, every run whose final status was "
            f"enqueued in a {args.latency_window:g} s steady window:", "",
            "| setting | runs | decoded p50 / p95 s | committed p50 / p95 s | visible p50 s | "
            "visible p95 s |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for r in lats:
            out.append(f"| {r['label']} (max_lateness {r['max_lateness_s']:g} s) | {r['sample']} | "
                       f"{r['released_p50']:.1f} / {r['released_p95']:.1f} | {r['durable_p50']:.1f} / "
                       f"{r['durable_p95']:.1f} | {r['visible_p50']:.1f} | **{r['visible_p95']:.1f}** |")
        out += ["", "Target p95 < 5 s. Under steady traffic an event waits in its partition's reorder buffer "
                "until the watermark (newest event time - max_lateness) passes it, so it is committed "
                "~max_lateness after arrival; meanwhile the flush after its arrival (writer max_seconds, "
                "2 s) shows it in the provisional files, which is when `runs` sees it."]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes, short runs (smoke test, < 2 minutes)")
    p.add_argument("--only", default="throughput,rss,latency", help="comma list of throughput,rss,latency")
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
    args = p.parse_args(argv)
    q = args.quick
    args.repeats = args.repeats or (1 if q else 3)
    args.events = args.events or (6_000 if q else 100_000)
    args.lb_interval = args.lb_interval or (0.3 if q else 1.0)
    args.rss_rate = args.rss_rate or (300.0 if q else 1000.0)
    args.rss_seconds = args.rss_seconds or (12.0 if q else 60.0)
    args.latency_warmup = args.latency_warmup if args.latency_warmup is not None else (3.0 if q else 5.0)
    args.latency_window = args.latency_window or (8.0 if q else 60.0)
    args.latency_settings = args.latency_settings or ("2" if q else "default,2")
    args.skip_tail = args.skip_tail or q or args.profile
    args.keep = args.keep or args.profile
    only = set(args.only.split(","))
    if args.prefetch:
        EXTRA_WORKER_ENV["AMLWH_EVENTHUB__PREFETCH"] = str(args.prefetch)
    if args.max_batch_size:
        EXTRA_WORKER_ENV["AMLWH_EVENTHUB__MAX_BATCH_SIZE"] = str(args.max_batch_size)
    if args.worker_cmd:
        import shlex

        WORKER_CMD[:] = shlex.split(args.worker_cmd)

    from bench.bench_backfill import loadavg, machine
    from devstack import Azurite, LocalHub

    mach, vers = machine(), versions()
    print(f"machine:  {mach}")
    print(f"versions: {vers}")
    print(f"load avg at start: {loadavg()}")
    OUT.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="worker-", dir=OUT))
    print(f"work dir: {work.relative_to(ROOT)} ({'kept' if args.keep else 'removed at the end'})", flush=True)
    tp = mem = None
    lats: list[dict] = []
    try:
        with LocalHub("warm:1") as hub, Azurite() as azurite:
            args.hub_pid, args.azurite_pid = hub.pid, azurite.pid
            if "throughput" in only:
                tp = throughput(args, hub, azurite, work)
            if "rss" in only:
                mem = rss(args, hub, azurite, work)
            if "latency" in only:
                for setting in args.latency_settings.split(","):
                    lats.append(latency(args, hub, azurite, work,
                                        None if setting == "default" else float(setting)))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    print("\n== summary (medians; targets informative, never asserted)")
    if tp:
        print(f"  throughput: raw {tp['raw_eps']:,.0f} ev/s, worker {tp['worker_eps']:,.0f} ev/s from process start "
              f"-> ratio {tp['ratio']:.2f} (per repeat {', '.join(f'{x:.2f}' for x in tp['ratios'])}); from first "
              f"claim raw {tp['raw_eps_claim']:,.0f}, worker {tp['worker_eps_claim']:,.0f} -> ratio "
              f"{tp['ratio_claim']:.2f}; target >= 0.8")
        print(f"              CPU per event (whole process): raw {tp['raw_cpu_us']:.0f} us, worker "
              f"{tp['worker_cpu_us']:.0f} us; hub + Azurite <= {tp['stack_cores']:.2f} cores; "
              f"peak RSS raw {tp['raw_rss']:.0f} MB, worker {tp['worker_rss']:.0f} MB")
    if mem:
        print(f"  peak RSS ({mem['partitions']} partitions, {mem['rate']:,.0f} ev/s live): {mem['peak_rss']:.0f} MB "
              f"lifetime (wait4), {mem['load_peak_rss']:.0f} MB under load, {mem['drain_peak_rss']:.0f} MB polled "
              f"while draining, {mem['idle_rss']:.0f} MB idle; ~{mem['kb_per_in_flight']:.1f} KB per in-flight "
              f"event; target < 300 MB")
    for r in lats:
        print(f"  latency {r['label']}: visible in runs p50 {r['visible_p50']:.1f}s p95 {r['visible_p95']:.1f}s "
              f"(n={r['sample']}); target p95 < 5 s")
    print(f"load avg at end: {loadavg()}")
    if args.markdown:
        print()
        print(markdown(args, mach, vers, tp, mem, lats))
    if args.json:
        args.json.write_text(json.dumps({"machine": mach, "versions": vers, "throughput": tp, "rss": mem,
                                         "latency": lats}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_raw":
        raise SystemExit(raw_main(sys.argv[2:]))
    if len(sys.argv) > 1 and sys.argv[1] == "_produce":
        raise SystemExit(produce_main(sys.argv[2:]))
    raise SystemExit(main())
