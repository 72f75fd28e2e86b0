"""Reading events out of producer transfers and preparing per-delivery annotations."""

from __future__ import annotations

from .amqp_decode import decode_value, map_entry_spans, value_end
from .amqp_encode import enc_described, enc_long, enc_map_entries, enc_str, enc_sym, enc_timestamp
from .frames import section_spans
from .store import SERVICE_ANNOTATIONS, IncomingEvent, Partition

BATCH_MESSAGE_FORMAT = 0x80013700
SECTION_HEADER, SECTION_DELIVERY_ANN, SECTION_MESSAGE_ANN, SECTION_DATA = 0x70, 0x71, 0x72, 0x75
PARTITION_KEY = "x-opt-partition-key"


def _value_at(message: bytes, section_start: int) -> int:
    # Section = 0x00, descriptor (smallulong: 2 bytes, ulong: 9 bytes), value.
    return section_start + (3 if message[section_start + 1] == 0x53 else 10)


def _annotation_entries(message: bytes, at: int) -> tuple[list[bytes], str | None]:
    """Client-supplied annotations (service ones dropped: the hub stamps its own) and the key."""
    entries, key = [], None
    for name, raw in map_entry_spans(message, at)[0]:
        name_bytes = name.encode() if isinstance(name, str) else bytes(name)
        if name_bytes in SERVICE_ANNOTATIONS:
            continue
        if name_bytes == PARTITION_KEY.encode():
            value, _ = decode_value(raw, value_end(raw, 0))
            key = value.decode("utf-8") if isinstance(value, bytes) else (None if value is None else str(value))
        entries.append(raw)
    return entries, key


def parse_event(message: bytes) -> IncomingEvent:
    prefix = b""
    entries: list[bytes] = []
    key = None
    rest_start = len(message)
    for code, start, end in section_spans(message):
        if code == SECTION_HEADER:
            prefix = bytes(message[start:end])
        elif code == SECTION_DELIVERY_ANN:
            continue  # hop-by-hop: never forwarded to consumers
        elif code == SECTION_MESSAGE_ANN:
            entries, key = _annotation_entries(message, _value_at(message, start))
        else:
            rest_start = start
            break
    return IncomingEvent(prefix, entries, key, bytes(message[rest_start:]))


def parse_transfer(payload: bytes, message_format: int) -> tuple[list[IncomingEvent], str | None]:
    """Events of one producer delivery and the partition key that routes it.

    A batch (format 0x80013700) carries one data section per event, each a complete encoded
    message; the batch's own annotations carry the partition key.
    """
    if message_format != BATCH_MESSAGE_FORMAT:
        event = parse_event(payload)
        return [event], event.partition_key
    events, batch_key = [], None
    for code, start, end in section_spans(payload):
        at = _value_at(payload, start)
        if code == SECTION_MESSAGE_ANN:
            batch_key = _annotation_entries(payload, at)[1]
        elif code == SECTION_DATA:
            body_at = at + (2 if payload[at] == 0xA0 else 5)
            events.append(parse_event(payload[body_at:end]))
    if batch_key is not None:
        for event in events:
            if event.partition_key is None:
                event.partition_key = batch_key
                event.annotation_entries.append(enc_sym(PARTITION_KEY) + enc_str(batch_key))
    key = batch_key if batch_key is not None else (events[0].partition_key if events else None)
    return events, key


def runtime_metrics_section(partition: Partition, now_ms: int) -> bytes:
    """Delivery annotations a receiver asks for with com.microsoft:enable-receiver-runtime-metric."""
    info = partition.properties()
    return enc_described(SECTION_DELIVERY_ANN, enc_map_entries([
        enc_sym("last_enqueued_sequence_number") + enc_long(info["last_enqueued_sequence_number"]),
        enc_sym("last_enqueued_offset") + enc_str(info["last_enqueued_offset"]),
        enc_sym("last_enqueued_time_utc") + enc_timestamp(info["last_enqueued_time_utc"]),
        enc_sym("runtime_info_retrieval_time_utc") + enc_timestamp(now_ms),
    ]))
