"""Drift thresholds: a DatasetDriftDetected event carries the coefficient, not the threshold
its monitor alerts at (that is set on the monitor in Azure ML), so the report takes them as
options. No heavy imports: the command line parses them before anything else runs."""

from __future__ import annotations

from dataclasses import dataclass, field

# azureml-datadrift's DataDriftDetector uses 0.2 when a monitor is created without one
DEFAULT_DRIFT_THRESHOLD = 0.2


def parse_threshold(text: str) -> tuple[str | None, float]:
    """`0.3` (every monitor) or `MONITOR=0.3` (one monitor, by name) -> (monitor, value).
    ValueError says what is wrong with it."""
    monitor, sep, value = text.rpartition("=")
    if sep and not monitor.strip():
        raise ValueError(f"{text!r} names no monitor: write MONITOR=VALUE, or VALUE for all")
    try:
        threshold = float(value)
    except ValueError:
        raise ValueError(f"{text!r}: {value!r} is not a number (a drift coefficient, 0 to 1)") from None
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"{text!r}: a drift threshold is between 0 and 1")
    return (monitor.strip() if sep else None), threshold


@dataclass(frozen=True)
class DriftThresholds:
    """The threshold of each monitor: its own when given by name, else the common one."""

    default: float = DEFAULT_DRIFT_THRESHOLD
    monitors: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_options(cls, parsed: list[tuple[str | None, float]]) -> DriftThresholds:
        """From parse_threshold results; the last value given for a monitor (or for all) wins."""
        default = DEFAULT_DRIFT_THRESHOLD
        monitors = {}
        for monitor, value in parsed:
            if monitor is None:
                default = value
            else:
                monitors[monitor] = value
        return cls(default, monitors)

    def of(self, monitor: str) -> float:
        return self.monitors.get(monitor, self.default)
