"""SAS token checks and the two request/response nodes: `$cbs` (put-token) and `$management`.

Both nodes receive a request message on a client->hub link and answer on the hub->client link
of the same session addressed to the same node, with `correlation-id` set to the request's
`message-id` (the SDK matches replies that way; it sends no reply-to).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, quote_plus, urlparse

from .amqp_decode import decode_value
from .amqp_encode import (
    NULL, enc_bool, enc_described, enc_int, enc_list, enc_long, enc_map_entries, enc_str, enc_str_array,
    enc_timestamp, encode_any,
)
from .amqp_types import Timestamp
from .frames import section_spans
from .jwt_tokens import looks_like_jwt, validate_jwt
from .store import EventStore

SECTION_PROPERTIES = 0x73
SECTION_APP_PROPERTIES = 0x74
SECTION_AMQP_VALUE = 0x77


@dataclass
class Token:
    audience: str
    expires_at: float


class SasValidator:
    def __init__(self, key_name: str, key: str):
        self.key_name = key_name
        self.key = key

    def validate(self, token: str) -> tuple[Token | None, str]:
        """Returns (token, "") when valid, else (None, reason as the service words it)."""
        if not token.startswith("SharedAccessSignature "):
            return None, "InvalidIssuer: Token issuer is invalid."
        fields = {k: v[0] for k, v in parse_qs(token[len("SharedAccessSignature "):]).items()}
        audience, signature, expiry = fields.get("sr"), fields.get("sig"), fields.get("se")
        if not audience or not signature or not expiry or not expiry.isdigit():
            return None, "InvalidToken: The token is malformed."
        if fields.get("skn") != self.key_name:
            return None, f"InvalidSignature: The key name '{fields.get('skn')}' is not authorized."
        signed = f"{quote_plus(audience)}\n{expiry}".encode("utf-8")
        expected = base64.b64encode(hmac.new(self.key.encode("utf-8"), signed, hashlib.sha256).digest())
        if not hmac.compare_digest(expected, signature.encode("ascii", "replace")):
            return None, "InvalidSignature: The token has an invalid signature."
        if int(expiry) < time.time():
            return None, "ExpiredToken: The token is expired."
        return Token(audience, float(expiry)), ""


def audience_hub(audience: str) -> str:
    """The hub an audience names ("" for the whole namespace)."""
    path = urlparse(audience).path if "://" in audience else audience
    return path.strip("/").split("/")[0].lower()


def token_covers(tokens: list[Token], hub_name: str) -> bool:
    now = time.time()
    return any(t.expires_at >= now and audience_hub(t.audience) in ("", hub_name.lower()) for t in tokens)


@dataclass
class Request:
    message_id: Any
    application_properties: dict
    body: Any


def decode_request(message: bytes) -> Request:
    message_id, props, body = None, {}, None
    for code, start, end in section_spans(message):
        value, _ = decode_value(message, start + 3 if message[start + 1] == 0x53 else start + 10)
        if code == SECTION_PROPERTIES and value:
            message_id = value[0]
        elif code == SECTION_APP_PROPERTIES:
            # The SDK sends some values (operation, type) as binary: read them as text.
            props = {str(k): (v.decode("utf-8") if isinstance(v, bytes) else v) for k, v in (value or {}).items()}
        elif code == SECTION_AMQP_VALUE:
            body = value
    return Request(message_id, props, body)


def encode_response(correlation_id: Any, status: int, description: str, body: bytes = NULL) -> bytes:
    """Reply message: status under both spellings the SDK's two readers use."""
    properties = [NULL] * 13
    properties[5] = encode_any(correlation_id)
    app = enc_map_entries([
        enc_str("status-code") + enc_int(status),
        enc_str("status-description") + enc_str(description),
        enc_str("statusCode") + enc_int(status),
        enc_str("statusDescription") + enc_str(description),
    ])
    out = enc_described(SECTION_PROPERTIES, enc_list(properties)) + enc_described(SECTION_APP_PROPERTIES, app)
    if body != NULL:
        out += enc_described(SECTION_AMQP_VALUE, body)
    return out


def _jwt_token(body: str, cbs_audience: str | None) -> tuple[Token | None, str]:
    """A JWT put-token: the token's checks in jwt_tokens.py; it then covers what the request
    names (sb://<namespace>/<hub>), as a SAS token covers its `sr`."""
    claims, reason = validate_jwt(body, cbs_audience)
    if claims is None:
        return None, reason
    return Token(cbs_audience or "", claims.expires_at), ""


def handle_put_token(request: Request, validator: SasValidator, tokens: list[Token]) -> bytes:
    props = request.application_properties
    if props.get("operation") != "put-token":
        return encode_response(request.message_id, 400, f"Unsupported CBS operation {props.get('operation')!r}.")
    kind = props.get("type")
    body = request.body.decode("utf-8") if isinstance(request.body, bytes) else str(request.body or "")
    if kind == "jwt":  # an Azure AD access token (the SDK's TokenCredential path)
        token, reason = _jwt_token(body, str(props.get("name") or ""))
    elif kind == "servicebus.windows.net:sastoken":
        token, reason = validator.validate(body)
    else:
        return encode_response(request.message_id, 400, "Property 'type' in the 'application-properties' section "
                                                         "is either missing, has the wrong type, or has an unexpected value.")
    if token is None:
        return encode_response(request.message_id, 401, reason)
    tokens.append(token)
    return encode_response(request.message_id, 202, "Accepted")


def handle_management(request: Request, store: EventStore, validator: SasValidator) -> bytes:
    props = request.application_properties
    reply = request.message_id
    security_token = props.get("security_token")
    if security_token is not None:
        text = str(security_token)
        token, reason = _jwt_token(text, None) if looks_like_jwt(text) else validator.validate(text)
        if token is None:
            return encode_response(reply, 401, reason)
    if props.get("operation") != "READ":
        return encode_response(reply, 400, f"Unsupported management operation {props.get('operation')!r}.")
    name = str(props.get("name") or "")
    hub = store.get(name)
    if hub is None:
        return encode_response(reply, 404, f"The messaging entity '{name}' could not be found.")
    kind = props.get("type")
    if kind == "com.microsoft:eventhub":
        body = enc_map_entries([
            enc_str("name") + enc_str(hub.name),
            enc_str("type") + enc_str("com.microsoft:eventhub"),
            enc_str("created_at") + enc_timestamp(Timestamp(hub.created_at_ms)),
            enc_str("partition_count") + enc_int(len(hub.partition_ids)),
            enc_str("partition_ids") + enc_str_array(hub.partition_ids),
        ])
        return encode_response(reply, 200, "OK", body)
    if kind == "com.microsoft:partition":
        pid = str(props.get("partition"))
        part = hub.partitions.get(pid)
        if part is None:
            return encode_response(reply, 404, f"The partition '{pid}' of '{hub.name}' could not be found.")
        info = part.properties()
        body = enc_map_entries([
            enc_str("name") + enc_str(hub.name),
            enc_str("type") + enc_str("com.microsoft:partition"),
            enc_str("partition") + enc_str(pid),
            enc_str("begin_sequence_number") + enc_long(info["begin_sequence_number"]),
            enc_str("last_enqueued_sequence_number") + enc_long(info["last_enqueued_sequence_number"]),
            enc_str("last_enqueued_offset") + enc_str(info["last_enqueued_offset"]),
            enc_str("last_enqueued_time_utc") + enc_timestamp(info["last_enqueued_time_utc"]),
            enc_str("is_partition_empty") + enc_bool(info["is_partition_empty"]),
        ])
        return encode_response(reply, 200, "OK", body)
    return encode_response(reply, 400, f"Unsupported management type {kind!r}.")
