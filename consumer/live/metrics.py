"""The worker's Prometheus metrics and its health endpoints, on `[metrics] port`.

Two kinds of metric:
- read from a stats snapshot at scrape time (a custom collector): the per-partition
  counters, lag, buffer and watermark. Scraping is rare and events are many, and the
  pipelines count already, so nothing is updated on the hot path for them. The collector
  sees only what `snapshot()` returns (WorkerStats), never the worker itself;
- updated where they happen, a few times per flush at most: latency histograms (flush,
  checkpoint, compaction) and counters of ownership changes, errors and stalls
  (WorkerMetrics).

Each worker has its own registry, so several workers in one process (tests) never clash.
One small WSGI app serves /metrics (prometheus_client's), /healthz and /readyz, in a daemon
thread with wsgiref: no web framework.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from socketserver import ThreadingMixIn
from typing import Callable
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Histogram, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from consumer.errors import ConfigError
from consumer.live.partition import PartitionCounters


@dataclass(frozen=True)
class PartitionStats:
    counters: PartitionCounters
    buffered: int  # events held by the reorder buffer
    checkpoint_failures: int  # consecutive failed checkpoints
    lag_events: int = 0
    lag_seconds: float = 0.0
    watermark_delay_s: float | None = None  # wall clock - release watermark; None before any event


@dataclass(frozen=True)
class WorkerStats:
    partitions: dict[str, PartitionStats]  # by partition id, the partitions owned now
    pending_rows: int  # rows waiting for the next flush


# name: (help, PartitionCounters field, by-label name, PartitionCounters by-label field)
_COUNTERS = {
    "amlwh_messages_received": ("messages received from the hub", "messages", None, None),
    "amlwh_events_received": ("events decoded into the reorder buffer", None, "event_type", "received_by_type"),
    "amlwh_events_released": ("events released to the writer", "events", "event_type", "released_by_type"),
    "amlwh_events_late": ("events released late for their subject", "late", "event_type", "late_by_type"),
    "amlwh_dead_letters": ("dead-lettered bodies", "dead_letters", "reason", "dead_letters_by_reason"),
    "amlwh_ignored": ("messages ignored by the filter", "ignored", "reason", "ignored_by_reason"),
}
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_COMPACTION_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)


class WorkerMetrics:
    """The metrics updated where things happen. Methods, not the prometheus objects, are
    what the worker's parts call, so they need not know prometheus_client."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        reg = self.registry
        for collector in (ProcessCollector, PlatformCollector, GCCollector):
            collector(registry=reg)
        self._flush = Histogram("amlwh_flush_seconds", "a flush: commit of the pending rows (and "
                                "provisional files) in the writer thread", buckets=_LATENCY_BUCKETS, registry=reg)
        self._checkpoint = Histogram("amlwh_checkpoint_seconds", "one partition's checkpoint write",
                                     buckets=_LATENCY_BUCKETS, registry=reg)
        self._compaction = Histogram("amlwh_compaction_seconds", "one background compaction round",
                                     buckets=_COMPACTION_BUCKETS, registry=reg)
        self._ownership = Counter("amlwh_ownership_changes", "partitions claimed or lost (closed before stop)",
                                  ["change"], registry=reg)
        self._errors = Counter("amlwh_errors", "errors by kind", ["kind"], registry=reg)
        self._stalls = Counter("amlwh_stalls", "stalled partitions found by the watchdog", ["partition"],
                               registry=reg)

    def flushed(self, seconds: float) -> None:
        self._flush.observe(seconds)

    def checkpointed(self, seconds: float) -> None:
        self._checkpoint.observe(seconds)

    def compacted(self, seconds: float) -> None:
        self._compaction.observe(seconds)

    def ownership_changed(self, change: str) -> None:  # "claimed" | "lost"
        self._ownership.labels(change).inc()

    def error(self, kind: str, count: int = 1) -> None:
        self._errors.labels(kind).inc(count)

    def stalled(self, partition: str) -> None:
        self._stalls.labels(partition).inc()

    def watch(self, snapshot: Callable[[], WorkerStats]) -> None:
        """Read `snapshot()` at every scrape for the per-partition metrics."""
        self.registry.register(_SnapshotCollector(snapshot))


class _SnapshotCollector:
    def __init__(self, snapshot: Callable[[], WorkerStats]) -> None:
        self.snapshot = snapshot

    def collect(self):
        stats = self.snapshot()
        partitions = sorted(stats.partitions.items())
        for name, (doc, total, label, by) in _COUNTERS.items():
            labels = ["partition"] + ([label] if label else [])
            family = CounterMetricFamily(name, doc, labels=labels)
            for pid, p in partitions:
                if by is None:
                    family.add_metric([pid], getattr(p.counters, total))
                    continue
                for key, count in sorted(getattr(p.counters, by).items()):
                    family.add_metric([pid, key], count)
            yield family
        gauges = {
            "amlwh_buffered_events": ("events held by the reorder buffer", lambda p: p.buffered),
            "amlwh_checkpoint_failures": ("consecutive failed checkpoints", lambda p: p.checkpoint_failures),
            "amlwh_partition_lag_events": ("events the hub enqueued past the last durable (checkpointed) one",
                                           lambda p: p.lag_events),
            "amlwh_partition_lag_seconds": ("last enqueued time - enqueued time of the last durable event",
                                            lambda p: p.lag_seconds),
            "amlwh_watermark_delay_seconds": ("wall clock - the reorder buffer's release watermark",
                                              lambda p: p.watermark_delay_s),
        }
        for name, (doc, value) in gauges.items():
            family = GaugeMetricFamily(name, doc, labels=["partition"])
            for pid, p in partitions:
                if value(p) is not None:
                    family.add_metric([pid], value(p))
            yield family
        yield GaugeMetricFamily("amlwh_owned_partitions", "partitions this worker owns", value=len(partitions))
        yield GaugeMetricFamily("amlwh_pending_rows", "rows waiting for the next flush", value=stats.pending_rows)


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # a scrape every few seconds is no news
        pass


def serve_metrics(metrics: WorkerMetrics, health: Callable[[bool], tuple[bool, str]], port: int,
                  host: str = "0.0.0.0") -> WSGIServer:
    """Serve /metrics, /healthz and /readyz on host:port from a daemon thread.
    `health(ready)` answers (ok, why): liveness when `ready` is False, readiness when True."""
    scrape = make_wsgi_app(metrics.registry)

    def app(environ, start_response):
        path = environ.get("PATH_INFO") or "/"
        if path not in ("/healthz", "/readyz"):
            return scrape(environ, start_response)
        ok, why = health(path == "/readyz")
        body = (why + "\n").encode()
        start_response("200 OK" if ok else "503 Service Unavailable",
                       [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))])
        return [body]

    try:
        server = make_server(host, port, app, server_class=_Server, handler_class=_QuietHandler)
    except OSError as exc:
        raise ConfigError(f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}; set [metrics] port "
                          "(env AMLWH_METRICS__PORT) to a free port, or 0 to turn metrics off") from None
    threading.Thread(target=server.serve_forever, name="amlwh-metrics", daemon=True).start()
    return server
