"""AMQP 1.0 decoding into plain Python values; symbols come back as `Symbol` (a str) and
described values as `Described`, so callers can tell them apart from strings and lists."""

from __future__ import annotations

import struct
import uuid
from typing import Any, Callable

from .amqp_types import AmqpDecodeError, Described, Symbol, Timestamp

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_I32 = struct.Struct(">i")
_U64 = struct.Struct(">Q")
_I64 = struct.Struct(">q")
_F32 = struct.Struct(">f")
_F64 = struct.Struct(">d")

# Each reader takes (buffer, position after the constructor byte) and returns
# (value, position after the value); arrays reuse them for their elements.

Reader = Callable[[bytes, int], tuple[Any, int]]


def _fixed(width: int, conv: Callable[[bytes, int], Any]) -> Reader:
    return lambda b, p: (conv(b, p), p + width)


def _read_variable(size_width: int, conv: Callable[[bytes], Any]) -> Reader:
    def read(b: bytes, p: int) -> tuple[Any, int]:
        if size_width == 1:
            n, p = b[p], p + 1
        else:
            n, p = _U32.unpack_from(b, p)[0], p + 4
        return conv(bytes(b[p : p + n])), p + n

    return read


def _read_compound(size_width: int, as_map: bool) -> Reader:
    def read(b: bytes, p: int) -> tuple[Any, int]:
        if size_width == 1:
            size, count, p = b[p], b[p + 1], p + 2
            end = p - 1 + size
        else:
            size, count = _U32.unpack_from(b, p)[0], _U32.unpack_from(b, p + 4)[0]
            p += 8
            end = p - 4 + size
        items = []
        for _ in range(count):
            item, p = decode_value(b, p)
            items.append(item)
        if p != end:
            raise AmqpDecodeError("compound size does not match its items")
        if as_map:
            return dict(zip(items[0::2], items[1::2])), p
        return items, p

    return read


def _read_array(size_width: int) -> Reader:
    def read(b: bytes, p: int) -> tuple[Any, int]:
        if size_width == 1:
            count, p = b[p + 1], p + 2
        else:
            count, p = _U32.unpack_from(b, p + 4)[0], p + 8
        code, p = b[p], p + 1
        descriptor = None
        if code == 0:
            descriptor, p = decode_value(b, p)
            code, p = b[p], p + 1
        reader = _READERS[code]
        items = []
        for _ in range(count):
            item, p = reader(b, p)
            items.append(item if descriptor is None else Described(descriptor, item))
        return items, p

    return read


def _read_described(b: bytes, p: int) -> tuple[Any, int]:
    descriptor, p = decode_value(b, p)
    value, p = decode_value(b, p)
    return Described(descriptor, value), p


_READERS: dict[int, Reader] = {
    0x00: _read_described,
    0x40: lambda b, p: (None, p),
    0x41: lambda b, p: (True, p),
    0x42: lambda b, p: (False, p),
    0x43: lambda b, p: (0, p),
    0x44: lambda b, p: (0, p),
    0x45: lambda b, p: ([], p),
    0x50: _fixed(1, lambda b, p: b[p]),
    0x51: _fixed(1, lambda b, p: struct.unpack_from(">b", b, p)[0]),
    0x52: _fixed(1, lambda b, p: b[p]),
    0x53: _fixed(1, lambda b, p: b[p]),
    0x54: _fixed(1, lambda b, p: struct.unpack_from(">b", b, p)[0]),
    0x55: _fixed(1, lambda b, p: struct.unpack_from(">b", b, p)[0]),
    0x56: _fixed(1, lambda b, p: b[p] != 0),
    0x60: _fixed(2, lambda b, p: _U16.unpack_from(b, p)[0]),
    0x61: _fixed(2, lambda b, p: struct.unpack_from(">h", b, p)[0]),
    0x70: _fixed(4, lambda b, p: _U32.unpack_from(b, p)[0]),
    0x71: _fixed(4, lambda b, p: _I32.unpack_from(b, p)[0]),
    0x72: _fixed(4, lambda b, p: _F32.unpack_from(b, p)[0]),
    0x73: _fixed(4, lambda b, p: chr(_U32.unpack_from(b, p)[0])),
    0x80: _fixed(8, lambda b, p: _U64.unpack_from(b, p)[0]),
    0x81: _fixed(8, lambda b, p: _I64.unpack_from(b, p)[0]),
    0x82: _fixed(8, lambda b, p: _F64.unpack_from(b, p)[0]),
    0x83: _fixed(8, lambda b, p: Timestamp(_I64.unpack_from(b, p)[0])),
    0x98: _fixed(16, lambda b, p: uuid.UUID(bytes=bytes(b[p : p + 16]))),
    0xA0: _read_variable(1, bytes),
    0xA1: _read_variable(1, lambda r: r.decode("utf-8")),
    0xA3: _read_variable(1, lambda r: Symbol(r.decode("ascii"))),
    0xB0: _read_variable(4, bytes),
    0xB1: _read_variable(4, lambda r: r.decode("utf-8")),
    0xB3: _read_variable(4, lambda r: Symbol(r.decode("ascii"))),
    0xC0: _read_compound(1, as_map=False),
    0xC1: _read_compound(1, as_map=True),
    0xD0: _read_compound(4, as_map=False),
    0xD1: _read_compound(4, as_map=True),
    0xE0: _read_array(1),
    0xF0: _read_array(4),
}


def decode_value(b: bytes, p: int = 0) -> tuple[Any, int]:
    """Decode one value at position p; returns (value, position after it)."""
    try:
        reader = _READERS[b[p]]
    except KeyError:
        raise AmqpDecodeError(f"unsupported AMQP constructor 0x{b[p]:02x}") from None
    except IndexError:
        raise AmqpDecodeError("truncated AMQP value") from None
    return reader(b, p + 1)


# Widths of fixed-size values by constructor, for skipping without decoding.
_FIXED_WIDTH = {c: 0 for c in range(0x40, 0x46)}
_FIXED_WIDTH.update({c: 1 for c in range(0x50, 0x57)})
_FIXED_WIDTH.update({0x60: 2, 0x61: 2, 0x70: 4, 0x71: 4, 0x72: 4, 0x73: 4, 0x74: 4})
_FIXED_WIDTH.update({0x80: 8, 0x81: 8, 0x82: 8, 0x83: 8, 0x84: 8, 0x94: 16, 0x98: 16})


def value_end(b: bytes, p: int) -> int:
    """Position just after the value starting at p, in O(1) for compound values."""
    code = b[p]
    if code == 0x00:
        return value_end(b, value_end(b, p + 1))
    width = _FIXED_WIDTH.get(code)
    if width is not None:
        return p + 1 + width
    high = code & 0xF0
    if high in (0xA0, 0xC0, 0xE0):
        return p + 2 + b[p + 1]
    if high in (0xB0, 0xD0, 0xF0):
        return p + 5 + _U32.unpack_from(b, p + 1)[0]
    raise AmqpDecodeError(f"unsupported AMQP constructor 0x{code:02x}")


def map_entry_spans(b: bytes, p: int) -> tuple[list[tuple[Any, bytes]], int]:
    """Decode a map's keys but keep each entry's raw bytes (to re-emit values untouched)."""
    code = b[p]
    if code == 0x40:
        return [], p + 1
    if code == 0xC1:
        count, q = b[p + 2], p + 3
    elif code == 0xD1:
        count, q = _U32.unpack_from(b, p + 5)[0], p + 9
    else:
        raise AmqpDecodeError(f"expected a map, found constructor 0x{code:02x}")
    entries = []
    for _ in range(count // 2):
        key, value_at = decode_value(b, q)
        q_end = value_end(b, value_at)
        entries.append((key, bytes(b[q:q_end])))
        q = q_end
    return entries, q
