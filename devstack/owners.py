"""Owner level (epoch) rules per (hub, consumer group, partition), worded like the service.

- A receiver with owner level E is admitted when no active receiver has a higher level; every
  active receiver (with a lower or equal level, or none) is then disconnected: link stolen.
- A lower owner level, or a receiver without one while an owner-level receiver is active, is
  refused with amqp:link:stolen.
- At most 5 receivers without owner level per partition and consumer group.
"""

from __future__ import annotations

from typing import Protocol

LINK_STOLEN = "amqp:link:stolen"
RESOURCE_LIMIT = "amqp:resource-limit-exceeded"
MAX_PLAIN_RECEIVERS = 5


class Receiver(Protocol):
    name: str
    epoch: int | None

    def kick(self, condition: str, description: str) -> None: ...


class OwnerRegistry:
    def __init__(self) -> None:
        self._active: dict[tuple[str, str, str], list[Receiver]] = {}

    def admit(self, key: tuple[str, str, str], new: Receiver) -> tuple[str, str] | None:
        """Register `new`; returns (condition, description) if it is refused."""
        active = self._active.setdefault(key, [])
        epochs = [r.epoch for r in active if r.epoch is not None]
        highest = max(epochs) if epochs else None
        if new.epoch is None:
            if highest is not None:
                return LINK_STOLEN, (
                    f"At least one receiver for the endpoint is created with epoch of '{highest}', and so "
                    "non-epoch receiver is not allowed. Either reconnect with a higher epoch, or make sure "
                    "all epoch receivers are closed or disconnected."
                )
            if len(active) >= MAX_PLAIN_RECEIVERS:
                names = ", ".join(r.name for r in active)
                return RESOURCE_LIMIT, (
                    "Exceeded the maximum number of allowed receivers per partition in a consumer group "
                    f"which is {MAX_PLAIN_RECEIVERS}. List of connected receivers - {names}."
                )
            active.append(new)
            return None
        if highest is not None and new.epoch < highest:
            return LINK_STOLEN, (
                f"Receiver '{new.name}' with epoch '{new.epoch}' cannot be created because a receiver with "
                f"a higher epoch '{highest}' already exists. Make sure you are creating receiver with "
                "increasing epoch value to ensure connectivity, or ensure all old epoch receivers are "
                "closed or disconnected."
            )
        self._active[key] = [new]
        for old in active:
            old.kick(LINK_STOLEN, (
                f"New receiver '{new.name}' with higher epoch of '{new.epoch}' is created hence current "
                f"receiver '{old.name}' with epoch '{'' if old.epoch is None else old.epoch}' is getting "
                "disconnected. If you are recreating the receiver, make sure a higher epoch is used."
            ))
        return None

    def release(self, key: tuple[str, str, str], receiver: Receiver) -> None:
        active = self._active.get(key)
        if active and receiver in active:
            active.remove(receiver)
            if not active:
                del self._active[key]
