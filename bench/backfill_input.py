"""The NDJSON file bench_backfill reads: written once, reused while its name matches.

`--events` message bodies into bench/out/events-n<N>-s<seed>-p<payload>-d<days>-v<format>.ndjson:
devstack.synth.generate run lifecycles plus model and drift events (~1.5 KB mean body with
payload_bytes=1620, 30% of bodies wrapped in a one-element JSON array, mixed Event Grid /
CloudEvents envelopes), passed through devstack.synth.disorder (local shuffles, ~1% hours-late
events, ~2% redeliveries) plus 4 poison lines per chunk that must dead-letter, truncated to
exactly N lines; event time spans `days`. Generation is chunked so the generator never holds
the whole stream. A .meta.json next to the file holds its size, mix and parameters.
"""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

from bench.common import OUT

FORMAT_VERSION = 1  # bump when the generator recipe below changes: the cache name includes it
CHUNK_RUNS = 20_000  # run lifecycles per generate() call (~120k bodies, ~180 MB in memory)
LINES_PER_RUN = 6.05  # measured mean bodies per run after disorder(), used to spread time
START_US = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z
EVENT_TYPES = (b"RunStatusChanged", b"RunCompleted", b"ModelRegistered", b"ModelDeployed",
               b"DatasetDriftDetected")


def dataset_path(events: int, seed: int, payload_bytes: int, days: int) -> Path:
    return OUT / f"events-n{events}-s{seed}-p{payload_bytes}-d{days}-v{FORMAT_VERSION}.ndjson"


def build_dataset(path: Path, events: int, seed: int, payload_bytes: int, days: int) -> dict:
    """Write exactly `events` lines; return the facts stored next to the file."""
    from devstack.synth import disorder, generate, poison_lines

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


def dataset(events: int, seed: int, payload_bytes: int, days: int, regenerate: bool) -> tuple[Path, dict, bool]:
    """(path, meta, cached): the cached file when its recorded size matches, else a new one."""
    path = dataset_path(events, seed, payload_bytes, days)
    meta_path = path.with_suffix(".meta.json")
    if path.exists() and meta_path.exists() and not regenerate:
        meta = json.loads(meta_path.read_text())
        if meta.get("bytes") == path.stat().st_size:
            return path, meta, True
    return path, build_dataset(path, events, seed, payload_bytes, days), False


def warm_page_cache(path: Path) -> None:
    """Read the file once so every measured run starts with it in the page cache."""
    with open(path, "rb", buffering=0) as fh:
        while fh.read(16 << 20):
            pass
