"""AMQP 1.0 encoding: explicit per-type encoders (performative fields, where the AMQP type
matters) plus `encode_any` for Python values in message bodies and properties.

Compound values are always written as list8/list32 and map8/map32, never list0: the SDK's
pure-Python decoder reads a performative's field count from a list8/list32 header only.
"""

from __future__ import annotations

import datetime as _dt
import struct
import uuid
from typing import Any

from .amqp_types import Described, Symbol, Timestamp, ULong

NULL = b"\x40"
TRUE = b"\x41"
FALSE = b"\x42"

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_I32 = struct.Struct(">i")
_U64 = struct.Struct(">Q")
_I64 = struct.Struct(">q")
_F64 = struct.Struct(">d")



def enc_bool(v: bool | None) -> bytes:
    return NULL if v is None else (TRUE if v else FALSE)


def enc_ubyte(v: int | None) -> bytes:
    return NULL if v is None else b"\x50" + bytes((v,))


def enc_ushort(v: int | None) -> bytes:
    return NULL if v is None else b"\x60" + _U16.pack(v)


def enc_uint(v: int | None) -> bytes:
    if v is None:
        return NULL
    if v == 0:
        return b"\x43"
    if v < 256:
        return b"\x52" + bytes((v,))
    return b"\x70" + _U32.pack(v & 0xFFFFFFFF)


def enc_ulong(v: int | None) -> bytes:
    if v is None:
        return NULL
    if v == 0:
        return b"\x44"
    if v < 256:
        return b"\x53" + bytes((v,))
    return b"\x80" + _U64.pack(v)


def enc_int(v: int | None) -> bytes:
    if v is None:
        return NULL
    if -128 <= v <= 127:
        return b"\x54" + struct.pack(">b", v)
    return b"\x71" + _I32.pack(v)


def enc_long(v: int | None) -> bytes:
    if v is None:
        return NULL
    if -128 <= v <= 127:
        return b"\x55" + struct.pack(">b", v)
    return b"\x81" + _I64.pack(v)


def enc_timestamp(ms: int | None) -> bytes:
    return NULL if ms is None else b"\x83" + _I64.pack(int(ms))


def enc_uuid(u: uuid.UUID | None) -> bytes:
    return NULL if u is None else b"\x98" + u.bytes


def _enc_variable(small: int, large: int, raw: bytes) -> bytes:
    n = len(raw)
    if n < 256:
        return bytes((small, n)) + raw
    return bytes((large,)) + _U32.pack(n) + raw


def enc_bin(v: bytes | None) -> bytes:
    return NULL if v is None else _enc_variable(0xA0, 0xB0, bytes(v))


def enc_str(v: str | None) -> bytes:
    return NULL if v is None else _enc_variable(0xA1, 0xB1, v.encode("utf-8"))


def enc_sym(v: str | bytes | None) -> bytes:
    if v is None:
        return NULL
    raw = v if isinstance(v, bytes) else v.encode("ascii")
    return _enc_variable(0xA3, 0xB3, raw)


def enc_list(items: list[bytes]) -> bytes:
    """A list of already-encoded items (always list8/list32, see module doc)."""
    body = b"".join(items)
    if len(body) + 1 < 256 and len(items) < 256:
        return bytes((0xC0, len(body) + 1, len(items))) + body
    return b"\xd0" + _U32.pack(len(body) + 4) + _U32.pack(len(items)) + body


def enc_map_entries(entries: list[bytes]) -> bytes:
    """A map from already-encoded `key + value` byte strings (one per entry)."""
    body = b"".join(entries)
    count = 2 * len(entries)
    if len(body) + 1 < 256 and count < 256:
        return bytes((0xC1, len(body) + 1, count)) + body
    return b"\xd1" + _U32.pack(len(body) + 4) + _U32.pack(count) + body


def enc_described(code: int, value: bytes) -> bytes:
    if code < 256:
        return b"\x00\x53" + bytes((code,)) + value
    return b"\x00\x80" + _U64.pack(code) + value


def enc_sym_array(names: list[str] | None) -> bytes:
    """Symbol array (how capabilities and SASL mechanisms are sent)."""
    if names is None:
        return NULL
    return _enc_array(0xA3, [n.encode("ascii") for n in names])


def enc_str_array(values: list[str]) -> bytes:
    return _enc_array(0xA1, [v.encode("utf-8") for v in values])


def _enc_array(small_code: int, raws: list[bytes]) -> bytes:
    if all(len(r) < 256 for r in raws):
        body = bytes((small_code,)) + b"".join(bytes((len(r),)) + r for r in raws)
    else:
        body = bytes((small_code + 0x10,)) + b"".join(_U32.pack(len(r)) + r for r in raws)
    if len(body) + 1 < 256 and len(raws) < 256:
        return bytes((0xE0, len(body) + 1, len(raws))) + body
    return b"\xf0" + _U32.pack(len(body) + 4) + _U32.pack(len(raws)) + body


def encode_any(v: Any) -> bytes:
    """Encode a Python value with the natural AMQP type (int -> long, str -> string)."""
    if v is None:
        return NULL
    if isinstance(v, bool):
        return enc_bool(v)
    if isinstance(v, Symbol):
        return enc_sym(v)
    if isinstance(v, str):
        return enc_str(v)
    if isinstance(v, (bytes, bytearray, memoryview)):
        return enc_bin(bytes(v))
    if isinstance(v, Timestamp):
        return enc_timestamp(v)
    if isinstance(v, ULong):
        return enc_ulong(v)
    if isinstance(v, int):
        return enc_long(v) if -(2**63) <= v < 2**63 else enc_ulong(v)
    if isinstance(v, float):
        return b"\x82" + _F64.pack(v)
    if isinstance(v, uuid.UUID):
        return enc_uuid(v)
    if isinstance(v, _dt.datetime):
        return enc_timestamp(int(v.timestamp() * 1000))
    if isinstance(v, Described):
        d = v.descriptor
        head = enc_ulong(d) if isinstance(d, int) else enc_sym(d)
        return b"\x00" + head + encode_any(v.value)
    if isinstance(v, dict):
        return enc_map_entries([encode_any(k) + encode_any(x) for k, x in v.items()])
    if isinstance(v, (list, tuple)):
        return enc_list([encode_any(x) for x in v])
    raise TypeError(f"cannot AMQP-encode {type(v).__name__}")
