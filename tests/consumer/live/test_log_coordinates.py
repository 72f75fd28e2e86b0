"""The worker's log lines about a partition or an event carry its coordinates as fields
(consumer/logs.py FIELDS), so JSON logs can be filtered by partition, offset and sequence
number: a real worker run in-process (tests/support/inprocess.py) on the local hub and
Azurite claims a partition, dead-letters a body and loses the partition to another
consumer, and the records it logged are read back from caplog."""

from __future__ import annotations

import asyncio
import functools
import json
import logging

import pytest
from azure.eventhub.aio import EventHubConsumerClient

from consumer.logs import JsonFormatter
from devstack.sdk_helpers import send_events
from tests.support.events import run_event
from tests.support.inprocess import (
    InProcessWorker,
    checkpoints,
    live_settings,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]


def worker_records(caplog, prefix: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "amlwh.worker" and r.getMessage().startswith(prefix)]


async def test_claim_dead_letter_and_close_lines_carry_partition_offset_and_sequence_number(
        local_hub, make_hub, azurite, checkpoint_container, tmp_path, caplog):
    hub = make_hub(1)
    cs = local_hub.connection_string(hub)
    cp = functools.partial(checkpoints, local_hub, hub, azurite, checkpoint_container)
    caplog.set_level(logging.INFO, logger="amlwh")
    # sequence 0 an event, sequence 1 a body that is not JSON: a dead letter
    await send_events(cs, [run_event("ok-0", "Running", "2025-01-01T10:00:00Z", event_id="ok-0"),
                           b"{not json"], partition_id="0")
    settings = live_settings(local_hub, hub, azurite, checkpoint_container, tmp_path / "wh")
    async with InProcessWorker(settings) as w:
        await wait_until(lambda: cp_at(cp, 1), 30, "checkpoint at sequence 1", task=w.task)

        (claimed,) = worker_records(caplog, "partition 0 claimed")
        assert claimed.partition == "0"

        (dead,) = worker_records(caplog, "dead letter (invalid_json)")
        assert (dead.partition, dead.sequence_number) == ("0", 1)
        assert dead.offset is not None and f"offset {dead.offset} sequence 1" in dead.getMessage()
        fields = json.loads(JsonFormatter().format(dead))  # and they reach a JSON line as fields
        assert (fields["partition"], fields["offset"], fields["sequence_number"]) == ("0", dead.offset, 1)

        # another consumer with a higher owner level takes partition 0: the SDK closes it here
        thief = EventHubConsumerClient.from_connection_string(cs, consumer_group="$Default",
                                                             load_balancing_interval=0.5)

        async def on_event(_, event):
            pass

        stealing = asyncio.create_task(thief.receive(on_event, partition_id="0", owner_level=1,
                                                     starting_position="-1"))
        try:
            await wait_until(lambda: worker_records(caplog, "partition 0 closed"), 30, "partition 0 closed",
                             task=w.task)
        finally:
            await thief.close()
            await asyncio.wait_for(stealing, 10)
        (closed,) = worker_records(caplog, "partition 0 closed")
        # dropped after the checkpoint: the dead letter's message, sequence 1
        assert (closed.partition, closed.offset, closed.sequence_number) == ("0", dead.offset, 1)
        assert closed.levelno == logging.WARNING
        # the SDK reported the stolen link to on_error before it closed the partition
        reported = [r for r in worker_records(caplog, "partition 0: ")
                    if r.getMessage().endswith("(the SDK retries)")]
        assert reported and all(r.partition == "0" for r in reported)
        assert await w.stop() == 0


async def cp_at(cp, sequence: int) -> bool:
    return (await cp()).get("0") == sequence
