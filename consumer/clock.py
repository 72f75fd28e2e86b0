"""The clocks of consumer/: every time it reads comes from here (transforms/ takes them as
arguments). Wall time stamps what is stored and compares file ages; monotonic time
measures intervals (flush due, back-off, idleness, progress)."""

from __future__ import annotations

import time


def wall_us() -> int:
    """Wall-clock time, integer microseconds since the epoch (UTC)."""
    return time.time_ns() // 1000


def wall_s() -> float:
    """Wall-clock seconds since the epoch: the unit of file modification times."""
    return time.time()


def mono_us() -> int:
    """Monotonic time in integer microseconds, for intervals only."""
    return time.monotonic_ns() // 1000


def mono_s() -> float:
    """Monotonic seconds, for intervals only."""
    return time.monotonic()


def pause_s(seconds: float) -> None:
    """Block this thread for `seconds` (a child process waiting out a grace period)."""
    time.sleep(seconds)
