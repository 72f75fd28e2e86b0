"""What `amlwh run` checks before it starts the worker, each bounded to seconds.

Without these, a wrong port or key leaves the worker retrying in the SDK for minutes with
warnings that name neither the setting nor the fix, a missing consumer group shows as a
link error per partition, and a missing container as failed ownership claims. In order:

1. the hub's host answers on its port (DNS, refused, no answer);
2. the hub accepts the credentials and has the event hub (its partition ids);
3. the consumer group exists (a receiver attached to one partition for a moment);
4. the checkpoint container exists, and takes a write (a probe blob, deleted again);
5. the warehouse folder can be created and written (a probe file, deleted again).

The first failure raises a PreflightError (consumer/errors.py) saying what is wrong, where,
and what to change; secrets are never part of it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from contextlib import contextmanager
from pathlib import Path

from consumer.config import Settings
from consumer.errors import WarehouseUnwritable, WarehouseWriteError
from consumer.eventhub.clients import client_namespace, eventhub_name
from consumer.eventhub.identity import credential_for
from consumer.eventhub.probes import (
    TIMEOUT_S,
    hub_error,
    probe_clients,
    probe_consumer_group,
    probe_store,
    reach_hub,
    store_error,
    store_location,
)

log = logging.getLogger("amlwh.preflight")
# The checkpoint store logs every failed listing at WARNING before raising it; the error
# raised here says it better, once.
_QUIET_DURING_PROBES = ("azure.eventhub.extensions.checkpointstoreblobaio", "azure.eventhub")


@contextmanager
def _quiet_sdk():
    loggers = [logging.getLogger(name) for name in _QUIET_DURING_PROBES]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        if lg.getEffectiveLevel() > logging.DEBUG:  # -v keeps everything
            lg.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


async def check_hub(settings: Settings, client) -> str:
    """Checks 1-3 with a probe `client`; returns the namespace the worker's checkpoints are
    stored under."""
    eh = settings.eventhub
    hub = eventhub_name(eh)
    await reach_hub(eh)
    try:
        async with client:
            ids = await asyncio.wait_for(client.get_partition_ids(), TIMEOUT_S)
            log.debug("preflight: %s has partitions %s", hub, ", ".join(ids))
            if ids:
                await asyncio.wait_for(probe_consumer_group(client, eh, hub, ids[0]), TIMEOUT_S)
            return client_namespace(client)
    except Exception as exc:
        explained = hub_error(exc, eh, hub)
        if explained is None:
            raise
        raise explained from None


async def check_checkpoints(settings: Settings, store, namespace: str) -> None:
    """Check 4 with a probe `store`: the consumer group's ownership lists, and a probe blob
    is written and deleted."""
    cp = settings.checkpoint
    location = store_location(store, cp)
    try:
        async with store:
            await asyncio.wait_for(probe_store(store, namespace, eventhub_name(settings.eventhub),
                                               settings.eventhub.consumer_group, write=True), TIMEOUT_S)
    except Exception as exc:
        explained = store_error(exc, location, cp)
        if explained is None:
            raise
        raise explained from None


def check_warehouse(path: Path) -> None:
    """Check 5: create the folder (as the first flush would) and write and delete a file in it."""
    probe = Path(path) / f".amlwh-preflight-{uuid.uuid4().hex}"
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, b"amlwh preflight\n")
        finally:
            os.close(fd)
        probe.unlink()
    except OSError as exc:
        where = exc.filename or path
        raise WarehouseUnwritable(
            f"cannot write to the warehouse at {where}: {exc.strerror or exc}. Set [warehouse] path "
            "(AMLWH_WAREHOUSE__PATH) to a folder this user can create and write, or fix its "
            "permissions") from None


def check_remote_warehouse(sink) -> None:
    """Check 5 for a warehouse in Blob Storage: its container exists or is made, and a blob
    can be written in it."""
    try:
        sink.probe(TIMEOUT_S)
    except WarehouseWriteError as exc:
        raise WarehouseUnwritable(str(exc)) from None


async def preflight(settings: Settings, sink=None) -> None:
    """All five checks, in order; the first failure raises. Both clients are built first,
    so a missing setting is a configuration error before anything is dialled."""
    async with credential_for(settings) as credential:
        client, store = probe_clients(settings.eventhub, settings.checkpoint, credential)
        with _quiet_sdk():
            namespace = await check_hub(settings, client)
            await check_checkpoints(settings, store, namespace)
    if sink is not None and sink.remote is not None:
        check_remote_warehouse(sink)
    else:
        check_warehouse(settings.warehouse.local_path)
    log.debug("preflight: hub, consumer group, checkpoint container and warehouse are ready")


def run_preflight(settings: Settings, sink=None) -> None:
    """`sink`: the worker's warehouse, to check a remote one through its own client."""
    asyncio.run(preflight(settings, sink))
