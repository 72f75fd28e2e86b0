"""Event Hubs client construction: SAS connection string or Azure credentials.

The only place that knows how settings turn into SDK clients, so `publish`,
`run` and the benchmarks authenticate the same way; also how the worker reads
a received EventData.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from azure.eventhub.amqp import AmqpMessageBodyType

from consumer.config import EventHubSettings
from consumer.errors import ConfigError


def _entity_in(connection_string: str) -> str | None:
    for part in connection_string.split(";"):
        key, _, value = part.partition("=")
        if key.strip().lower() == "entitypath" and value:
            return value
    return None


def eventhub_name(settings: EventHubSettings) -> str:
    """The event hub to use: [eventhub] name, else the connection string's EntityPath."""
    secret = settings.connection_string
    name = settings.name or (_entity_in(secret.get_secret_value()) if secret else None)
    if not name:
        raise ConfigError(
            "no event hub named: set [eventhub] name (env AMLWH_EVENTHUB__NAME) or include "
            "EntityPath=<hub> in AMLWH_EVENTHUB__CONNECTION_STRING"
        )
    return name


def _auth(settings: EventHubSettings, credential) -> tuple[str, dict[str, Any]]:
    if settings.connection_string is not None:
        return "connection_string", {"conn_str": settings.connection_string.get_secret_value()}
    if settings.fully_qualified_namespace:
        if credential is None:  # a caller bug: consumer/eventhub/identity.py builds it
            raise RuntimeError("an Azure credential is needed for [eventhub] fully_qualified_namespace: "
                               "pass build_credential(settings)")
        return "credential", {"fully_qualified_namespace": settings.fully_qualified_namespace,
                              "credential": credential}
    raise ConfigError(
        "no Event Hubs credentials: set AMLWH_EVENTHUB__CONNECTION_STRING (SAS), or "
        "[eventhub] fully_qualified_namespace (env AMLWH_EVENTHUB__FULLY_QUALIFIED_NAMESPACE) "
        "to use Azure credentials (managed identity, workload identity, az login)"
    )


def _transport(settings: EventHubSettings) -> dict[str, Any]:
    """TLS and addressing options: a custom endpoint is dialled with AMQP over TLS (the SDK
    would otherwise switch to WebSockets for it)."""
    options: dict[str, Any] = {}
    if settings.custom_endpoint_address:
        from azure.eventhub import TransportType

        address = settings.custom_endpoint_address
        options["custom_endpoint_address"] = address if "://" in address else f"sb://{address}"
        options["transport_type"] = TransportType.Amqp
    if settings.connection_verify:
        options["connection_verify"] = settings.connection_verify
    return options


def producer_client(settings: EventHubSettings, credential=None, **kwargs: Any):
    """`credential`: consumer/eventhub/identity.py's, needed with a fully qualified namespace."""
    from azure.eventhub.aio import EventHubProducerClient

    mode, auth = _auth(settings, credential)
    name = eventhub_name(settings)
    kwargs = {**_transport(settings), **kwargs}
    if mode == "connection_string":
        return EventHubProducerClient.from_connection_string(eventhub_name=name, **auth, **kwargs)
    return EventHubProducerClient(eventhub_name=name, **auth, **kwargs)


def consumer_client(settings: EventHubSettings, credential=None, **kwargs: Any):
    """`credential`: consumer/eventhub/identity.py's, needed with a fully qualified namespace."""
    from azure.eventhub.aio import EventHubConsumerClient

    mode, auth = _auth(settings, credential)
    name = eventhub_name(settings)
    group = settings.consumer_group
    kwargs = {**_transport(settings), **kwargs}
    if mode == "connection_string":
        return EventHubConsumerClient.from_connection_string(
            eventhub_name=name, consumer_group=group, **auth, **kwargs)
    return EventHubConsumerClient(eventhub_name=name, consumer_group=group, **auth, **kwargs)


def client_namespace(client) -> str:
    """The fully qualified namespace a client's checkpoints and ownership are stored under:
    the SDK's event processor takes it from the same attribute (the connection string's
    Endpoint host, with its port when it names one)."""
    return client._address.hostname


def starting_position(value: str):
    if value == "earliest":
        return "-1"
    if value == "latest":
        return "@latest"
    when = datetime.fromisoformat(value)
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def enqueued_us(event) -> int | None:
    # the annotation EventData.enqueued_time reads (ms since the epoch), without building
    # a datetime per event on the event loop
    ms = event.raw_amqp_message.annotations.get(b"x-opt-enqueued-time")
    return None if not ms else int(ms) * 1000


def event_body(event) -> bytes:
    """The message body as bytes. Event Grid sends data sections (joined here). Any producer
    can send an AMQP value or sequence body instead; its text stands for it, so the decoder
    dead-letters it with its coordinates rather than the worker stopping on it at every
    restart."""
    body = event.body
    if isinstance(body, bytes):
        return body
    if event.body_type == AmqpMessageBodyType.DATA:
        return b"".join(body)
    return body.encode() if isinstance(body, str) else repr(body).encode()
