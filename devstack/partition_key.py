"""Partition-key routing, matching azure-eventhub's buffered producer.

The SDK's buffered producer (azure/eventhub/_buffered_producer/_partition_resolver.py) picks a
partition from Bob Jenkins' lookup3 "hashlittle2" over the key's characters: the two 32-bit
results are XORed, the low 16 bits read as a signed short, and the partition index is
abs(hash % count) with Python's modulo. Sending with a partition key through the regular
producer leaves the choice to the service, so the hub must agree with the buffered producer for
both to land keyed events on the same partition. Written independently here (and checked
against the SDK in the tests) so the hub does not depend on SDK internals.
"""

from __future__ import annotations

_MASK = 0xFFFFFFFF


def _rot(x: int, k: int) -> int:
    return ((x << k) | (x >> (32 - k))) & _MASK


def _mix(a: int, b: int, c: int) -> tuple[int, int, int]:
    a = (a - c) & _MASK; a ^= _rot(c, 4);  c = (c + b) & _MASK
    b = (b - a) & _MASK; b ^= _rot(a, 6);  a = (a + c) & _MASK
    c = (c - b) & _MASK; c ^= _rot(b, 8);  b = (b + a) & _MASK
    a = (a - c) & _MASK; a ^= _rot(c, 16); c = (c + b) & _MASK
    b = (b - a) & _MASK; b ^= _rot(a, 19); a = (a + c) & _MASK
    c = (c - b) & _MASK; c ^= _rot(b, 4);  b = (b + a) & _MASK
    return a, b, c


def _final(a: int, b: int, c: int) -> tuple[int, int, int]:
    c ^= b; c = (c - _rot(b, 14)) & _MASK
    a ^= c; a = (a - _rot(c, 11)) & _MASK
    b ^= a; b = (b - _rot(a, 25)) & _MASK
    c ^= b; c = (c - _rot(b, 16)) & _MASK
    a ^= c; a = (a - _rot(c, 4)) & _MASK
    b ^= a; b = (b - _rot(a, 14)) & _MASK
    c ^= b; c = (c - _rot(b, 24)) & _MASK
    return a, b, c


def _word(units: list[int]) -> int:
    # Little-endian 32-bit word from up to four character code points. Code points above 255
    # overlap their neighbours exactly as the SDK's ord()-based arithmetic does.
    return sum(u << (8 * i) for i, u in enumerate(units))


def lookup3_pair(key: str) -> tuple[int, int]:
    """hashlittle2 with both seeds 0; returns (primary, secondary) = (c, b)."""
    units = [ord(ch) for ch in key]
    a = b = c = (0xDEADBEEF + len(units)) & _MASK
    rest = units
    while len(rest) > 12:
        a = (a + _word(rest[0:4])) & _MASK
        b = (b + _word(rest[4:8])) & _MASK
        c = (c + _word(rest[8:12])) & _MASK
        a, b, c = _mix(a, b, c)
        rest = rest[12:]
    if not rest:
        return c, b
    a = (a + _word(rest[0:4])) & _MASK
    b = (b + _word(rest[4:8])) & _MASK
    c = (c + _word(rest[8:12])) & _MASK
    a, b, c = _final(a, b, c)
    return c, b


def partition_hash(key: str) -> int:
    """Signed 16-bit hash code of a partition key (0 for an empty key)."""
    if not key:
        return 0
    primary, secondary = lookup3_pair(key)
    low = (primary ^ secondary) & 0xFFFF
    return low - 0x10000 if low >= 0x8000 else low


def partition_for_key(key: str, partition_ids: list[str]) -> str:
    return partition_ids[abs(partition_hash(key) % len(partition_ids))]
