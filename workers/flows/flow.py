"""What the runtime needs to know about a flow: its name, the systems it calls, how to apply an event."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from sqlalchemy import Connection

from contracts.registry import ParsedEvent
from handlers.downstream import Downstream

Apply = Callable[[ParsedEvent, Connection, Mapping[str, Downstream]], object]


@dataclass(frozen=True)
class Flow:
    """One flow's wiring: `apply` runs the right handler with SQL ports on the message's transaction."""

    name: str
    systems: tuple[str, ...]
    apply: Apply
