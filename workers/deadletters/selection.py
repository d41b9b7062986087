"""How an operator names a moment ("2h" ago, an ISO date) when selecting dead letters: one grammar for all."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_RELATIVE = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def moment(text: str, *, now: datetime | None = None) -> datetime:
    """`2h`/`3d` ago, or an ISO date or date-time (UTC unless it names its zone); ValueError if neither."""
    relative = _RELATIVE.match(text.strip())
    if relative:
        amount, unit = relative.groups()
        try:
            return (now or datetime.now(UTC)) - timedelta(**{_UNITS[unit]: int(amount)})
        except OverflowError:  # before year 1: not a moment either
            raise ValueError(f"{text[:40]!r} is before the calendar's first year") from None
    found = datetime.fromisoformat(text.strip())
    return found if found.tzinfo is not None else found.replace(tzinfo=UTC)
