"""AML run status vocabulary: normalization and ordering ranks."""

from __future__ import annotations

# AML's own spelling, in lifecycle order. The position is the tie-break rank
# used when two events of one run share an event time: later lifecycle wins.
LIFECYCLE: tuple[str, ...] = (
    "Unknown",
    "NotStarted",
    "Starting",
    "Provisioning",
    "Preparing",
    "Queued",
    "Running",
    "Paused",
    "NotResponding",
    "Finalizing",
    "CancelRequested",
    "Completed",
    "Failed",
    "Canceled",
)
TERMINAL: frozenset[str] = frozenset({"Completed", "Failed", "Canceled"})
STATUS_RANK: dict[str, int] = {name: rank for rank, name in enumerate(LIFECYCLE)}

_ALIASES: dict[str, str] = {name.lower(): name for name in LIFECYCLE}
_ALIASES.update(
    {
        "cancelled": "Canceled",  # British spelling, also Azure Monitor's metric name
        "finished": "Completed",  # SDK v1 PipelineRun.get_status()
        "succeeded": "Completed",
    }
)


_EXACT: dict[str, str] = {spelling: name for name in LIFECYCLE for spelling in (name, name.lower())}


def normalize_status(raw: str) -> tuple[str, bool]:
    """Map a runStatus in any case/spacing to AML's spelling.

    Returns (status, recognized). Unrecognized values become "Unknown" (the
    ARM API's own catch-all) so the event still counts; the caller keeps the
    raw text beside it.
    """
    status = _EXACT.get(raw)  # the common spellings, without scanning characters
    if status is not None:
        return status, True
    key = "".join(ch for ch in raw.lower() if ch.isalnum())
    status = _ALIASES.get(key)
    if status is None:
        return "Unknown", False
    return status, True


def run_event_status(run_status: str | None) -> str:
    """The status a run event reports: its runStatus, or Completed for a RunCompleted
    that carries none (RunStatusChanged always carries one; the decoder checks)."""
    if run_status is None:
        return "Completed"
    return normalize_status(run_status)[0]
