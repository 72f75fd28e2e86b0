"""The SDK's BlobCheckpointStore, built from settings (connection string or Azure credentials)."""

from __future__ import annotations

from consumer.config import CheckpointSettings, ConfigError


def checkpoint_store(settings: CheckpointSettings):
    from azure.eventhub.extensions.checkpointstoreblobaio import BlobCheckpointStore

    if settings.connection_string is not None:
        return BlobCheckpointStore.from_connection_string(
            settings.connection_string.get_secret_value(), container_name=settings.container)
    if settings.account_url:
        from azure.identity.aio import DefaultAzureCredential

        return BlobCheckpointStore(
            blob_account_url=settings.account_url, container_name=settings.container,
            credential=DefaultAzureCredential())
    raise ConfigError(
        "no checkpoint storage: set AMLWH_CHECKPOINT__CONNECTION_STRING, or [checkpoint] "
        "account_url (env AMLWH_CHECKPOINT__ACCOUNT_URL) to use Azure credentials"
    )
