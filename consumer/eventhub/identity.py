"""The one Azure AD credential of a process: built here, handed to the Event Hubs clients and
the checkpoint store, closed by whoever built it.

`[eventhub] fully_qualified_namespace` and `[checkpoint] account_url` authenticate with
azure-identity's DefaultAzureCredential: environment (service principal), workload identity,
managed identity, then developer sign-ins (Azure CLI, ...). One instance serves both
services, so a managed identity endpoint is asked once per scope
(https://eventhubs.azure.net//.default, https://storage.azure.com/.default) and its tokens
are cached for both. `[identity] client_id` picks a user-assigned identity.

Async credentials hold an HTTP session: build one per event loop (`credential_for` around the
loop's work), never share one between `asyncio.run` calls.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from consumer.config import Settings


def uses_azure_ad(settings: Settings) -> bool:
    """Whether either service is reached with an Azure AD token rather than a connection string."""
    eh, cp = settings.eventhub, settings.checkpoint
    return bool((eh.connection_string is None and eh.fully_qualified_namespace)
                or (cp.connection_string is None and cp.account_url))


def build_credential(settings: Settings):
    """A DefaultAzureCredential (azure.identity.aio) when a service needs one, else None. The
    caller closes it (`await credential.close()`). Building it dials nothing."""
    if not uses_azure_ad(settings):
        return None
    from azure.identity.aio import DefaultAzureCredential

    client_id = settings.identity.client_id
    if client_id:
        return DefaultAzureCredential(managed_identity_client_id=client_id)
    return DefaultAzureCredential()  # AZURE_CLIENT_ID, if set, picks the identity


async def close_credential(credential) -> None:
    if credential is not None:
        await credential.close()


@asynccontextmanager
async def credential_for(settings: Settings) -> AsyncIterator:
    """build_credential for the duration of a block, closed at its end."""
    credential = build_credential(settings)
    try:
        yield credential
    finally:
        await close_credential(credential)
