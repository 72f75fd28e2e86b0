"""The SDK's BlobCheckpointStore, built from settings (connection string or Azure credentials),
and the worker's retry rule for checkpoint writes."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass

from azure.core.exceptions import AzureError

from consumer.config import CheckpointSettings
from consumer.errors import ConfigError

_BACKOFF_S = (0.5, 30.0)  # first and largest delay between checkpoint retries
# The blob SDK retries an unreachable store for ~80 s (15 s first backoff) while the worker
# holds its flush lock: bound one attempt and let our own backoff retry it.
CHECKPOINT_TIMEOUT_S = 5.0
# What a checkpoint write may fail with when storage is slow or away; anything else is
# a bug and stops the worker (nothing past the last good checkpoint is lost by that).
TRANSIENT_STORAGE_ERRORS = (AzureError, asyncio.TimeoutError, OSError)


# The blob SDK's default retries keep one call against unreachable storage busy for
# ~80 s. Ownership renewal and checkpoints run on a schedule and retry on the next
# round anyway, and a renewal stuck that long lets other workers take our partitions:
# fail fast (~7-10 s) instead.
_RETRY = {"retry_total": 2, "initial_backoff": 1, "increment_base": 2, "random_jitter_range": 1}


def checkpoint_store(settings: CheckpointSettings, credential=None, **options):
    """The store the worker uses; `options` override the blob client's (retries, timeouts).
    `credential`: consumer/eventhub/identity.py's, needed with an account URL."""
    from azure.eventhub.extensions.checkpointstoreblobaio import BlobCheckpointStore

    options = {**_RETRY, **options}
    if settings.connection_verify:
        options.setdefault("connection_verify", settings.connection_verify)
    if settings.connection_string is not None:
        return BlobCheckpointStore.from_connection_string(
            settings.connection_string.get_secret_value(), container_name=settings.container, **options)
    if settings.account_url:
        if credential is None:  # a caller bug: consumer/eventhub/identity.py builds it
            raise RuntimeError("an Azure credential is needed for [checkpoint] account_url: "
                               "pass build_credential(settings)")
        return BlobCheckpointStore(
            blob_account_url=settings.account_url, container_name=settings.container,
            credential=credential, **options)
    raise ConfigError(
        "no checkpoint storage: set AMLWH_CHECKPOINT__CONNECTION_STRING, or [checkpoint] "
        "account_url (env AMLWH_CHECKPOINT__ACCOUNT_URL) to use Azure credentials"
    )


def store_container(store):
    """The blob container client inside a BlobCheckpointStore. The store's public methods
    list ownership and checkpoints but not when a checkpoint was written, and cannot probe
    that the container takes writes: `amlwh status` and the preflight of `amlwh run` read
    those through the store's own client (same account, credentials and retry options)."""
    return store._container_client


def checkpoint_prefix(namespace: str, hub: str, consumer_group: str) -> str:
    """Where the store keeps one consumer group's checkpoint blobs (lower-cased, as it lists them)."""
    return f"{namespace}/{hub}/{consumer_group}/checkpoint/".lower()


@dataclass
class RetryState:
    """One partition's checkpoint retries: exponential backoff with jitter."""

    failures: int = 0
    next_attempt_us: int = 0

    def failed(self, now_us: int) -> float:
        self.failures += 1
        low, high = _BACKOFF_S
        delay = min(high, low * 2 ** (self.failures - 1)) * random.uniform(0.5, 1.0)  # jitter
        self.next_attempt_us = now_us + int(delay * 1e6)
        return delay
