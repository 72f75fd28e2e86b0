"""The clocks of consumer/ in integer microseconds (transforms/ takes them as arguments)."""

from __future__ import annotations

import time


def wall_us() -> int:
    return time.time_ns() // 1000


def mono_us() -> int:
    return time.monotonic_ns() // 1000
