"""AMQP 1.0 value types the hub needs to tell apart from plain Python values."""

from __future__ import annotations

from typing import Any, NamedTuple


class Symbol(str):
    """An AMQP symbol (ASCII name), as opposed to an AMQP string."""


class Timestamp(int):
    """Milliseconds since the Unix epoch, encoded as an AMQP timestamp."""


class ULong(int):
    """An int that must be encoded as AMQP ulong (e.g. a numeric descriptor)."""


class Described(NamedTuple):
    descriptor: Any
    value: Any


class AmqpDecodeError(ValueError):
    pass
