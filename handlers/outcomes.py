"""Outcomes every handler may return besides its own: the event was stale and changed nothing."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Stale:
    """The event is older than state already applied (a lower sequence, an earlier effective time).

    It is handled (so a redelivery is a duplicate) and counted, but it changes nothing and is not a failure.
    """

    reason: str
