"""Prometheus metrics for the worker, read from a stats snapshot at scrape time.

A custom collector rather than counters updated on the hot path: scraping is rare,
events are many, and the pipelines count already. The collector sees only what
`snapshot()` returns (WorkerStats), never the worker itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from consumer.live.partition import PartitionCounters


@dataclass(frozen=True)
class PartitionStats:
    counters: PartitionCounters
    buffered: int  # events held by the reorder buffer
    checkpoint_failures: int  # consecutive failed checkpoints


@dataclass(frozen=True)
class WorkerStats:
    partitions: dict[str, PartitionStats]  # by partition id, the partitions owned now
    pending_rows: int  # rows waiting for the next flush


_COUNTERS = {
    "amlwh_messages_received": ("messages received from the hub", "messages"),
    "amlwh_events_released": ("events released to the writer", "events"),
    "amlwh_events_late": ("events released late for their subject", "late"),
    "amlwh_dead_letters": ("dead-lettered bodies", "dead_letters"),
    "amlwh_ignored": ("messages ignored by the filter", "ignored"),
}


def serve_metrics(snapshot: Callable[[], WorkerStats], port: int, host: str = "0.0.0.0") -> None:
    from prometheus_client import start_http_server
    from prometheus_client.core import REGISTRY, CounterMetricFamily, GaugeMetricFamily

    class WorkerCollector:
        def collect(self):
            stats = snapshot()
            partitions = sorted(stats.partitions.items())
            for name, (doc, attr) in _COUNTERS.items():
                family = CounterMetricFamily(name, doc, labels=["partition"])
                for pid, p in partitions:
                    family.add_metric([pid], getattr(p.counters, attr))
                yield family
            buffered = GaugeMetricFamily("amlwh_buffered_events", "events held by the reorder buffer",
                                         labels=["partition"])
            for pid, p in partitions:
                buffered.add_metric([pid], p.buffered)
            yield buffered
            yield GaugeMetricFamily("amlwh_pending_rows", "rows waiting for the next flush",
                                    value=stats.pending_rows)
            failures = GaugeMetricFamily("amlwh_checkpoint_failures", "consecutive failed checkpoints",
                                         labels=["partition"])
            for pid, p in partitions:
                failures.add_metric([pid], p.checkpoint_failures)
            yield failures

    REGISTRY.register(WorkerCollector())
    start_http_server(port, addr=host)
