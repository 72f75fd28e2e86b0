"""The SDK's BlobCheckpointStore, built from settings (connection string or Azure credentials)."""

from __future__ import annotations

from consumer.config import CheckpointSettings, ConfigError


# The blob SDK's default retries keep one call against unreachable storage busy for
# ~80 s. Ownership renewal and checkpoints run on a schedule and retry on the next
# round anyway, and a renewal stuck that long lets other workers take our partitions:
# fail fast (~7-10 s) instead.
_RETRY = {"retry_total": 2, "initial_backoff": 1, "increment_base": 2, "random_jitter_range": 1}


def checkpoint_store(settings: CheckpointSettings):
    from azure.eventhub.extensions.checkpointstoreblobaio import BlobCheckpointStore

    if settings.connection_string is not None:
        return BlobCheckpointStore.from_connection_string(
            settings.connection_string.get_secret_value(), container_name=settings.container, **_RETRY)
    if settings.account_url:
        from azure.identity.aio import DefaultAzureCredential

        return BlobCheckpointStore(
            blob_account_url=settings.account_url, container_name=settings.container,
            credential=DefaultAzureCredential(), **_RETRY)
    raise ConfigError(
        "no checkpoint storage: set AMLWH_CHECKPOINT__CONNECTION_STRING, or [checkpoint] "
        "account_url (env AMLWH_CHECKPOINT__ACCOUNT_URL) to use Azure credentials"
    )
