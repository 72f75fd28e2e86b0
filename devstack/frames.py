"""AMQP frames and performatives: decode what clients send, encode what the hub sends.

Every outgoing performative is written with its FULL field count (trailing nulls included).
AMQP allows dropping trailing nulls, but the SDK's pure-Python stack indexes fields by
position and fails with "list index out of range" when they are missing.
"""

from __future__ import annotations

import struct
from typing import Any

from .amqp_decode import decode_value, value_end
from .amqp_encode import (
    FALSE, NULL, TRUE, enc_bin, enc_bool, enc_described, enc_list, enc_map_entries, enc_str, enc_sym,
    enc_sym_array, enc_ubyte, enc_uint, enc_ulong, enc_ushort,
)
from .amqp_types import AmqpDecodeError

SASL_HEADER = b"AMQP\x03\x01\x00\x00"
AMQP_HEADER = b"AMQP\x00\x01\x00\x00"
FRAME_AMQP = 0
FRAME_SASL = 1
FRAME_HEADER = struct.Struct(">IBBH")  # size, data offset (4-byte words), type, channel

OPEN, BEGIN, ATTACH, FLOW, TRANSFER, DISPOSITION, DETACH, END, CLOSE = range(0x10, 0x19)
SASL_MECHANISMS, SASL_INIT, SASL_CHALLENGE, SASL_RESPONSE, SASL_OUTCOME = range(0x40, 0x45)
ERROR = 0x1D
ACCEPTED, REJECTED = 0x24, 0x25
SOURCE, TARGET = 0x28, 0x29

# Field counts per performative, so incoming frames can be padded for indexing too.
FIELD_COUNTS = {
    OPEN: 10, BEGIN: 8, ATTACH: 14, FLOW: 11, TRANSFER: 11, DISPOSITION: 6,
    DETACH: 3, END: 1, CLOSE: 1,
    SASL_MECHANISMS: 1, SASL_INIT: 3, SASL_CHALLENGE: 1, SASL_RESPONSE: 1, SASL_OUTCOME: 2,
}

ROLE_SENDER = False
ROLE_RECEIVER = True


def frame(channel: int, body: bytes, payload: bytes = b"", frame_type: int = FRAME_AMQP) -> bytes:
    return FRAME_HEADER.pack(8 + len(body) + len(payload), 2, frame_type, channel) + body + payload


EMPTY_FRAME = FRAME_HEADER.pack(8, 2, FRAME_AMQP, 0)  # heartbeat


class Performative:
    """A decoded performative: its code, fields padded to the full count, trailing payload."""

    __slots__ = ("code", "fields", "payload", "spans")

    def __init__(self, code: int, fields: list[Any], payload: bytes, spans: list[bytes]):
        self.code = code
        self.fields = fields
        self.payload = payload
        self.spans = spans  # raw bytes of each field (used to echo terminus definitions)


def decode_performative(body: bytes, keep_spans: bool = False) -> Performative:
    if len(body) < 4 or body[0] != 0x00:
        raise AmqpDecodeError("frame body is not a described performative")
    code, p = decode_value(body, 1)
    list_code = body[p]
    if list_code == 0x45:
        count, p = 0, p + 1
    elif list_code == 0xC0:
        count, p = body[p + 2], p + 3
    elif list_code == 0xD0:
        count, p = struct.unpack_from(">I", body, p + 5)[0], p + 9
    else:
        raise AmqpDecodeError(f"performative is not a list (0x{list_code:02x})")
    fields: list[Any] = []
    spans: list[bytes] = []
    for _ in range(count):
        start = p
        value, p = decode_value(body, p)
        fields.append(value)
        if keep_spans:
            spans.append(bytes(body[start:p]))
    want = FIELD_COUNTS.get(code, count)
    if len(fields) < want:
        fields.extend([None] * (want - len(fields)))
        spans.extend([NULL] * (want - len(spans)))
    return Performative(code, fields, bytes(body[p:]), spans)


# ---------------------------------------------------------------- encoders


def enc_error(condition: str | None, description: str | None = None, info: dict | None = None) -> bytes:
    """An AMQP error; description and info are always present (the SDK hangs without them)."""
    if condition is None:
        return NULL
    info_bytes = enc_map_entries([enc_sym(k) + enc_str(str(v)) for k, v in (info or {}).items()])
    return enc_described(ERROR, enc_list([enc_sym(condition), enc_str(description or ""), info_bytes]))


def sasl_mechanisms(names: list[str]) -> bytes:
    return frame(0, enc_described(SASL_MECHANISMS, enc_list([enc_sym_array(names)])), frame_type=FRAME_SASL)


def sasl_outcome(code: int) -> bytes:
    return frame(0, enc_described(SASL_OUTCOME, enc_list([enc_ubyte(code), NULL])), frame_type=FRAME_SASL)


def open_frame(container_id: str, max_frame_size: int, channel_max: int, idle_timeout_ms: int | None) -> bytes:
    fields = [
        enc_str(container_id), NULL, enc_uint(max_frame_size), enc_ushort(channel_max),
        enc_uint(idle_timeout_ms), NULL, NULL, NULL, NULL, NULL,
    ]
    return frame(0, enc_described(OPEN, enc_list(fields)))


def begin_frame(channel: int, remote_channel: int, next_outgoing_id: int, window: int, handle_max: int) -> bytes:
    fields = [
        enc_ushort(remote_channel), enc_uint(next_outgoing_id), enc_uint(window), enc_uint(window),
        enc_uint(handle_max), NULL, NULL, NULL,
    ]
    return frame(channel, enc_described(BEGIN, enc_list(fields)))


def attach_frame(
    channel: int, name: str, handle: int, role: bool, source: bytes, target: bytes, *,
    initial_delivery_count: int | None = None, max_message_size: int | None = None,
    offered_capabilities: list[str] | None = None, properties: bytes = NULL,
) -> bytes:
    """Attach reply; source/target are encoded terminus bytes (non-null, the SDK insists)."""
    fields = [
        enc_str(name), enc_uint(handle), enc_bool(role),
        enc_ubyte(1 if role == ROLE_SENDER else None),  # snd-settle-mode: settled (we pre-settle)
        enc_ubyte(0), source, target, NULL, NULL,
        enc_uint(initial_delivery_count), enc_ulong(max_message_size),
        enc_sym_array(offered_capabilities), NULL, properties,
    ]
    return frame(channel, enc_described(ATTACH, enc_list(fields)))


def source_terminus(address: str) -> bytes:
    return enc_described(SOURCE, enc_list([enc_str(address)] + [NULL] * 10))


def target_terminus(address: str) -> bytes:
    return enc_described(TARGET, enc_list([enc_str(address)] + [NULL] * 6))


def flow_frame(
    channel: int, next_incoming_id: int | None, window: int, next_outgoing_id: int,
    handle: int | None = None, delivery_count: int | None = None, link_credit: int | None = None,
) -> bytes:
    fields = [
        enc_uint(next_incoming_id), enc_uint(window), enc_uint(next_outgoing_id), enc_uint(window),
        enc_uint(handle), enc_uint(delivery_count), enc_uint(link_credit), NULL, NULL, NULL, NULL,
    ]
    return frame(channel, enc_described(FLOW, enc_list(fields)))


def transfer_performative(handle: int, delivery_id: int, tag: bytes, more: bool) -> bytes:
    """A pre-settled transfer (message-format 0)."""
    fields = [
        enc_uint(handle), enc_uint(delivery_id), enc_bin(tag), b"\x43", TRUE,
        TRUE if more else FALSE, NULL, NULL, NULL, NULL, NULL,
    ]
    return enc_described(TRANSFER, enc_list(fields))


ACCEPTED_STATE = enc_described(ACCEPTED, enc_list([]))


def rejected_state(condition: str, description: str) -> bytes:
    return enc_described(REJECTED, enc_list([enc_error(condition, description, {})]))


def disposition_frame(channel: int, first: int, last: int, state: bytes) -> bytes:
    """Settled disposition from the receiving side (role=receiver)."""
    fields = [TRUE, enc_uint(first), enc_uint(last), TRUE, state, NULL]
    return frame(channel, enc_described(DISPOSITION, enc_list(fields)))


def detach_frame(channel: int, handle: int, closed: bool, error: bytes = NULL) -> bytes:
    return frame(channel, enc_described(DETACH, enc_list([enc_uint(handle), enc_bool(closed), error])))


def end_frame(channel: int, error: bytes = NULL) -> bytes:
    return frame(channel, enc_described(END, enc_list([error])))


def close_frame(error: bytes = NULL) -> bytes:
    return frame(0, enc_described(CLOSE, enc_list([error])))


def section_spans(message: bytes) -> list[tuple[int, int, int]]:
    """Split an encoded message into (section code, start, end) triples."""
    spans = []
    p = 0
    n = len(message)
    while p < n:
        if message[p] != 0x00:
            raise AmqpDecodeError("message section is not a described value")
        code, value_at = decode_value(message, p + 1)
        end = value_end(message, value_at)
        spans.append((code, p, end))
        p = end
    return spans
