"""Prometheus metrics for the worker, read from its own counters at scrape time.

A custom collector rather than counters updated on the hot path: scraping is
rare, events are many, and the worker's counters already exist.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from consumer.worker import Worker


def serve_metrics(worker: Worker, port: int, host: str = "0.0.0.0") -> None:
    from prometheus_client import start_http_server
    from prometheus_client.core import REGISTRY, CounterMetricFamily, GaugeMetricFamily

    class WorkerCollector:
        def collect(self):
            counters = {
                "amlwh_messages_received": ("messages received from the hub", "messages"),
                "amlwh_events_released": ("events released to the writer", "events"),
                "amlwh_events_late": ("events released late for their subject", "late"),
                "amlwh_dead_letters": ("dead-lettered bodies", "dead_letters"),
                "amlwh_ignored": ("messages ignored by the filter", "ignored"),
            }
            for name, (doc, attr) in counters.items():
                family = CounterMetricFamily(name, doc, labels=["partition"])
                for pid, pipeline in sorted(worker.pipelines.items()):
                    family.add_metric([pid], getattr(pipeline.counters, attr))
                yield family
            buffered = GaugeMetricFamily("amlwh_buffered_events", "events held by the reorder buffer",
                                         labels=["partition"])
            for pid, pipeline in sorted(worker.pipelines.items()):
                buffered.add_metric([pid], len(pipeline.buffer))
            yield buffered
            yield GaugeMetricFamily("amlwh_pending_rows", "rows waiting for the next flush",
                                    value=worker.sink.pending_rows)
            failures = GaugeMetricFamily("amlwh_checkpoint_failures", "consecutive failed checkpoints",
                                         labels=["partition"])
            for pid, retry in sorted(worker.retries.items()):
                failures.add_metric([pid], retry.failures)
            yield failures

    REGISTRY.register(WorkerCollector())
    start_http_server(port, addr=host)
