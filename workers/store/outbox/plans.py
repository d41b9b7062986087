"""An operator's planned end of a pause, as typed into `downstream pause --until` or the console's form."""

from __future__ import annotations

import re
from datetime import UTC, datetime, time, timedelta

_RELATIVE = re.compile(r"^(\d+)([mhd])$")
_CLOCK = re.compile(r"^(\d{1,2}):(\d{2})$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}


class NotAPlan(ValueError):
    """The text is not a moment in the future; the message says what was expected."""


def parse_until(text: str, *, now: datetime) -> datetime:
    """A planned end in the future: `06:00` (UTC; tomorrow if already past), an ISO date-time, or `2h`."""
    text = text.strip()
    relative = _RELATIVE.match(text)
    clock = _CLOCK.match(text)
    if relative:
        amount, unit = relative.groups()
        moment = now + timedelta(**{_UNITS[unit]: int(amount)})
    elif clock:
        hour, minute = (int(part) for part in clock.groups())
        if hour > 23 or minute > 59:  # the clock's own limits
            raise NotAPlan(f"not a time of day: {text!r}")
        moment = datetime.combine(now.date(), time(hour, minute), tzinfo=UTC)
        if moment <= now:
            moment += timedelta(days=1)
    else:
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise NotAPlan(f"not a time: {text!r} (use 06:00, 2026-12-03T06:00Z or 2h)") from None
        moment = parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
    if moment <= now:
        raise NotAPlan(f"{text} is in the past ({moment:%Y-%m-%d %H:%M} UTC)")
    return moment.astimezone(UTC)
