"""Short, bounded looks at the hub and the checkpoint store, and what their failures mean.

`amlwh run` checks what it needs before it starts (live/preflight.py) and `amlwh status`
reads the same services: both word a failure here, as what is wrong, where, and what to
change, without a secret. The SDKs retry an unreachable service for minutes by default, so
every probe client gets no retries and short timeouts.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from urllib.parse import urlsplit

from consumer.config import CheckpointSettings, EventHubSettings
from consumer.errors import (
    CheckpointStoreError,
    ConfigError,
    ConsumerGroupNotFound,
    HubCredentialsRefused,
    HubNotFound,
    HubUnreachable,
    PreflightError,
)
from consumer.eventhub.checkpoints import checkpoint_store, store_container
from consumer.eventhub.clients import consumer_client

TIMEOUT_S = 10.0  # one probe, start to end
CONNECT_TIMEOUT_S = 5.0
# options for probe clients: fail at the first error instead of retrying for minutes
HUB_PROBE_OPTIONS = {"retry_total": 0, "auth_timeout": CONNECT_TIMEOUT_S}
STORE_PROBE_OPTIONS = {"retry_total": 0, "connection_timeout": CONNECT_TIMEOUT_S, "read_timeout": TIMEOUT_S}
# how long a probe receiver stays attached: the hub refuses a link (unknown consumer group)
# with a detach right behind the attach, which the client reads within one or two turns
GROUP_PROBE_WINDOW_S = 0.5


def probe_clients(eventhub: EventHubSettings, checkpoint: CheckpointSettings, credential=None):
    """(consumer client, checkpoint store) with the probe options, built before anything is
    dialled: a missing or malformed setting is a configuration error first. `credential`:
    consumer/eventhub/identity.py's, for a namespace or account URL without a connection string."""
    try:
        client = consumer_client(eventhub, credential, **HUB_PROBE_OPTIONS)
    except ValueError as exc:  # the SDK's words name no part of the string
        raise ConfigError(
            f"[eventhub] connection_string (AMLWH_EVENTHUB__CONNECTION_STRING): {exc} Expected "
            "Endpoint=sb://<namespace>.servicebus.windows.net/;SharedAccessKeyName=<policy>;"
            "SharedAccessKey=<key>[;EntityPath=<hub>]") from None
    try:
        store = checkpoint_store(checkpoint, credential, **STORE_PROBE_OPTIONS)
    except ValueError as exc:
        raise ConfigError(
            f"[checkpoint] connection_string (AMLWH_CHECKPOINT__CONNECTION_STRING): {exc} Expected "
            "the storage account's connection string (DefaultEndpointsProtocol=https;AccountName=<account>;"
            "AccountKey=<key>;EndpointSuffix=core.windows.net)") from None
    return client, store


def _conn_str_fields(connection_string: str) -> dict[str, str]:
    fields = {}
    for part in connection_string.split(";"):
        key, _, value = part.partition("=")
        if key.strip():
            fields[key.strip().lower()] = value.strip()
    return fields


def hub_endpoint(settings: EventHubSettings) -> tuple[str, int]:
    """(host, port) the SDK connects to: [eventhub] custom_endpoint_address, else the
    connection string's Endpoint, else the fully qualified namespace; AMQP over TLS (5671),
    or plain AMQP (5672) for the emulator."""
    emulator = False
    if settings.custom_endpoint_address:
        address = settings.custom_endpoint_address
        netloc = urlsplit(address if "://" in address else f"sb://{address}").netloc
    elif settings.connection_string is not None:
        fields = _conn_str_fields(settings.connection_string.get_secret_value())
        endpoint = fields.get("endpoint", "")
        emulator = fields.get("usedevelopmentemulator", "").lower() == "true"
        netloc = urlsplit(endpoint if "://" in endpoint else f"sb://{endpoint}").netloc
    else:
        netloc = settings.fully_qualified_namespace or ""
    host, _, port = netloc.rpartition(":") if ":" in netloc else (netloc, "", "")
    return host, int(port) if port.isdigit() else (5672 if emulator else 5671)


def _where(settings: EventHubSettings, hub: str) -> str:
    host, port = hub_endpoint(settings)
    return f"event hub '{hub}' at {host}:{port}"


async def reach_hub(settings: EventHubSettings) -> None:
    """A TCP connection to the namespace, so a wrong host or port is said plainly."""
    host, port = hub_endpoint(settings)
    advice = ("Check the Endpoint in [eventhub] connection_string (AMLWH_EVENTHUB__CONNECTION_STRING) "
              "or [eventhub] fully_qualified_namespace, and the network path (firewall, proxy, DNS)")
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), CONNECT_TIMEOUT_S)
    except socket.gaierror as exc:
        raise HubUnreachable(f"cannot reach the hub at {host}:{port}: the name does not resolve "
                             f"({exc.strerror}). {advice}.") from None
    except asyncio.TimeoutError:
        raise HubUnreachable(f"cannot reach the hub at {host}:{port}: no answer within "
                             f"{CONNECT_TIMEOUT_S:g}s. {advice}.") from None
    except OSError as exc:
        reason = "connection refused" if isinstance(exc, ConnectionRefusedError) else (exc.strerror or str(exc))
        raise HubUnreachable(f"cannot reach the hub at {host}:{port}: {reason}. {advice}.") from None
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:
        pass


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    for line in text.splitlines():
        if line.strip().startswith("Description:"):  # the service's own words, when the SDK quotes them
            return line.strip().removeprefix("Description:").strip()
    return text.splitlines()[0]


def _no_token(exc: BaseException) -> bool:
    """Whether azure-identity failed to get a token. The SDK wraps its ClientAuthenticationError
    into an EventHubError (the original in `details`, or as the cause)."""
    from azure.core.exceptions import ClientAuthenticationError

    todo, seen = [exc], set()
    while todo:
        err = todo.pop()
        if id(err) in seen:
            continue
        seen.add(id(err))
        if isinstance(err, ClientAuthenticationError):
            return True
        todo += [e for e in (getattr(err, "details", None), err.__cause__, err.__context__)
                 if isinstance(e, BaseException)]
    return False


def hub_error(exc: BaseException, settings: EventHubSettings, hub: str) -> PreflightError | None:
    """The operator's wording of an SDK error from the hub; None when `exc` is no such error."""
    from azure.core.exceptions import ClientAuthenticationError  # an Azure identity without a token
    from azure.eventhub.exceptions import AuthenticationError, EventHubError

    where = _where(settings, hub)
    azure_ad = settings.connection_string is None
    if azure_ad and _no_token(exc):  # the hub was never asked
        return HubCredentialsRefused(
            f"no Azure AD token for {where}: {_first_line(exc)}. DefaultAzureCredential found no "
            "usable identity: on Azure, enable the managed identity (a user-assigned one needs "
            "[identity] client_id, env AMLWH_IDENTITY__CLIENT_ID, or AZURE_CLIENT_ID); elsewhere "
            "sign in with `az login` or set AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET")
    if azure_ad and isinstance(exc, AuthenticationError):
        return HubCredentialsRefused(
            f"the hub refused the Azure AD token for {where} ({_first_line(exc)}). Check [eventhub] "
            "fully_qualified_namespace (AMLWH_EVENTHUB__FULLY_QUALIFIED_NAMESPACE), that the identity "
            "DefaultAzureCredential uses ([identity] client_id or AZURE_CLIENT_ID) belongs to the "
            "namespace's tenant, and that it holds the Azure Event Hubs Data Receiver role on the "
            "namespace or the event hub")
    if isinstance(exc, (AuthenticationError, ClientAuthenticationError)):
        return HubCredentialsRefused(
            f"the hub refused the credentials for {where} ({_first_line(exc)}). Check "
            "SharedAccessKeyName and SharedAccessKey in AMLWH_EVENTHUB__CONNECTION_STRING (a policy "
            "with Listen rights on the namespace or the hub), or the identity's role (Azure Event "
            "Hubs Data Receiver)")
    if isinstance(exc, EventHubError) and "could not be found" in str(exc):
        return HubNotFound(
            f"there is no {where}. Check [eventhub] name (AMLWH_EVENTHUB__NAME) or EntityPath in "
            "the connection string, and the namespace in its Endpoint")
    # the SDK's AMQP layer raises its own errors from the receiver the group probe drives
    if isinstance(exc, (EventHubError, asyncio.TimeoutError)) or type(exc).__module__.startswith("azure.eventhub."):
        return HubUnreachable(
            f"cannot talk to the {where}: {_first_line(exc) if str(exc) else f'no answer within {TIMEOUT_S:g}s'}. "
            "Check [eventhub] connection_string / fully_qualified_namespace and the network path")
    return None


async def probe_consumer_group(client, settings: EventHubSettings, hub: str, partition_id: str) -> None:
    """Attach a receiver to one partition in the configured consumer group, then detach.

    The hub refuses a link to a consumer group it does not have (amqp:not-found) by
    detaching it right after the attach. The SDK's public `receive` reports that only
    through its retry callback, a second or more later, and reports "no events" meanwhile,
    so this opens the SDK's own receiver for the partition and runs its connection for
    GROUP_PROBE_WINDOW_S. A receiver that another reader's owner level refuses (link
    stolen) or the reader limit refuses still shows the group exists."""
    loop = asyncio.get_running_loop()

    async def ignore(_) -> None:
        return None

    create = getattr(client, "_create_consumer", None)
    if create is None:
        _unchecked_group(settings)
        return
    consumer = create(settings.consumer_group, partition_id, "@latest", ignore, prefetch=1)
    try:
        await consumer._open_with_retry()
        deadline = loop.time() + GROUP_PROBE_WINDOW_S
        while loop.time() < deadline:
            await consumer._handler.do_work_async()
    except AttributeError:  # another SDK version's receiver: a check skipped is no reason to stop
        _unchecked_group(settings)
    except Exception as exc:
        text = str(exc)
        if "amqp:not-found" in text or "could not be found" in text:
            raise ConsumerGroupNotFound(
                f"the {_where(settings, hub)} has no consumer group '{settings.consumer_group}'. "
                "Create it (Azure portal, or `az eventhubs eventhub consumer-group create`) or set "
                "[eventhub] consumer_group (AMLWH_EVENTHUB__CONSUMER_GROUP) to an existing one") from None
        if "link:stolen" in text or "resource-limit-exceeded" in text:
            return  # attached, then refused for other readers: the group is there
        raise
    finally:
        await consumer.close()


def _unchecked_group(settings: EventHubSettings) -> None:
    logging.getLogger("amlwh.preflight").warning(
        "consumer group '%s' not checked before start: this azure-eventhub version's receiver is "
        "not the one the check drives; a missing group shows once the worker receives",
        settings.consumer_group)


def store_location(store, settings: CheckpointSettings) -> str:
    """The container's URL without its query (a SAS token is a secret)."""
    try:
        url = urlsplit(store_container(store).url)
        return f"{url.scheme}://{url.netloc}{url.path}"
    except (AttributeError, ValueError):
        return f"container '{settings.container}'"


def store_error(exc: BaseException, location: str, settings: CheckpointSettings) -> PreflightError | None:
    """The operator's wording of a blob error from the checkpoint store; None when `exc` is
    no such error."""
    from azure.core.exceptions import (
        ClientAuthenticationError,
        HttpResponseError,
        ResourceNotFoundError,
        ServiceRequestError,
    )

    code = str(getattr(exc, "error_code", "") or "")
    account = location.rsplit("/", 1)[0]
    if isinstance(exc, ResourceNotFoundError) and "ContainerNotFound" in code:
        return CheckpointStoreError(
            f"the checkpoint container {location} does not exist. Create it (`az storage container "
            f"create --name {settings.container}` with the account's credentials, or the Azure portal) "
            "or set [checkpoint] container (AMLWH_CHECKPOINT__CONTAINER) to an existing one")
    if isinstance(exc, ClientAuthenticationError) or (
            isinstance(exc, HttpResponseError) and exc.status_code in (401, 403)):
        permission = "PermissionMismatch" in code
        return CheckpointStoreError(
            f"the storage account {account} refused {'writes to' if permission else 'the credentials for'} "
            f"the checkpoint container {location} ({code or exc.status_code}). Check AccountKey (or the "
            "SAS) in AMLWH_CHECKPOINT__CONNECTION_STRING, or give the identity the Storage Blob Data "
            "Contributor role on the container")
    if isinstance(exc, (ServiceRequestError, asyncio.TimeoutError)):
        reason = _first_line(exc) if str(exc) else f"no answer within {TIMEOUT_S:g}s"
        return CheckpointStoreError(
            f"cannot reach the checkpoint store at {account}: {reason}. Check the BlobEndpoint or "
            "AccountName in AMLWH_CHECKPOINT__CONNECTION_STRING ([checkpoint] account_url) and the "
            "network path")
    if isinstance(exc, HttpResponseError):
        return CheckpointStoreError(
            f"the checkpoint store {location} answered {exc.status_code} {code}: {_first_line(exc)}")
    return None


async def probe_store(store, namespace: str, hub: str, consumer_group: str, *, write: bool) -> None:
    """List the consumer group's ownership (the container exists, the credentials read), then
    with `write` put and delete a small blob beside it (they write)."""
    await store.list_ownership(namespace, hub, consumer_group)
    if write:
        import uuid

        container = store_container(store)
        name = f"amlwh-preflight/{uuid.uuid4().hex}"
        await container.upload_blob(name, b"", overwrite=True)
        await container.delete_blob(name)
