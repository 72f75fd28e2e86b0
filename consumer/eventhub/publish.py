"""`amlwh publish`: send each NDJSON line as one event body with the real SDK producer.

For demos, tests and replaying dumps into staging hubs. With a partition key
taken from the event's subject, all events of one run land on one partition,
which is how a production router would keep a run's events in order.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import orjson

from consumer.backfill.blocks import expand_paths, read_blocks
from consumer.config import Settings
from consumer.eventhub.clients import producer_client
from consumer.eventhub.identity import credential_for


@dataclass
class PublishSummary:
    sent: int = 0
    failed: int = 0
    keyed: int = 0
    first_error: str | None = None


def subject_of(body: bytes) -> str | None:
    """The `subject` of the (first) event in a body, or None when there is none."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if isinstance(doc, list) and doc:
        doc = doc[0]
    subject = doc.get("subject") if isinstance(doc, dict) else None
    return subject if isinstance(subject, str) and subject else None


async def publish_files(paths: list[Path], settings: Settings, *, key_by_subject: bool) -> PublishSummary:
    summary = PublishSummary()

    async def on_success(events, partition_id) -> None:
        summary.sent += len(events)

    async def on_error(events, partition_id, error) -> None:
        summary.failed += len(events)
        summary.first_error = summary.first_error or f"partition {partition_id}: {error}"

    # Buffered mode: the SDK hashes keys to partitions and packs batches per partition.
    async with credential_for(settings) as credential:
        producer = producer_client(settings.eventhub, credential, buffered_mode=True, on_success=on_success,
                                   on_error=on_error, max_wait_time=0.2)
        await _send(producer, paths, summary, key_by_subject)
    return summary


async def _send(producer, paths: list[Path], summary: PublishSummary, key_by_subject: bool) -> None:
    from azure.eventhub import EventData

    async with producer:
        for path in expand_paths(paths):
            for block in read_blocks(path):
                for view in block.bodies():
                    body = bytes(view)
                    if not body.strip():
                        continue
                    key = subject_of(body) if key_by_subject else None
                    summary.keyed += key is not None
                    await producer.send_event(EventData(body), partition_key=key)
        await producer.flush()


def publish(paths: list[Path], settings: Settings, *, key_by_subject: bool) -> PublishSummary:
    return asyncio.run(publish_files(paths, settings, key_by_subject=key_by_subject))
