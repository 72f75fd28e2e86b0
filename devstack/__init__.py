"""Local test/dev stack: an Event Hubs-compatible AMQP hub and Azurite (blob) for checkpoints.

    from devstack import LocalHub, Azurite

Test and development infrastructure only; never shipped. See docs/local-stack.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__all__ = ["Azurite", "HubControlError", "LocalHub"]

if TYPE_CHECKING:
    from .azurite import Azurite
    from .local_hub import HubControlError, LocalHub


def __getattr__(name: str):
    # Imported lazily so `python -m devstack.server` (the hub process) does not load the
    # test-side helpers, and modules run with -m are not imported twice.
    if name == "Azurite":
        from .azurite import Azurite
        return Azurite
    if name in ("LocalHub", "HubControlError"):
        from . import local_hub
        return getattr(local_hub, name)
    raise AttributeError(name)
