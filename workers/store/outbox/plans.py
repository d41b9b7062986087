"""An operator's planned end of a pause, as typed into `downstream pause --until` or the console's form."""

from __future__ import annotations

import re
from datetime import UTC, datetime, time, timedelta

_RELATIVE = re.compile(r"^(\d{1,6})([mhd])$")
_CLOCK = re.compile(r"^(\d{1,2}):(\d{2})$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}
_FORMS = "use 06:00, 2026-12-03T06:00Z or 2h"


class NotAPlan(ValueError):
    """The text is not a moment in the future; the message says what was expected."""


def parse_until(text: str, *, now: datetime) -> datetime:
    """A planned end in the future: `06:00` (UTC; tomorrow if already past), an ISO date-time, or `2h`."""
    text = text.strip()
    try:
        moment = _moment(text, now).astimezone(UTC)
    except NotAPlan:
        raise
    except (ValueError, OverflowError):  # not a date-time, or one beyond the calendar's years 1-9999
        raise NotAPlan(f"not a time: {text[:40]!r} ({_FORMS})") from None
    if moment <= now:
        raise NotAPlan(f"{text[:40]} is in the past ({moment:%Y-%m-%d %H:%M} UTC)")
    return moment


def _moment(text: str, now: datetime) -> datetime:
    relative = _RELATIVE.match(text)
    clock = _CLOCK.match(text)
    if relative:
        amount, unit = relative.groups()
        return now + timedelta(**{_UNITS[unit]: int(amount)})
    if clock:
        hour, minute = (int(part) for part in clock.groups())
        if hour > 23 or minute > 59:  # the clock's own limits
            raise NotAPlan(f"not a time of day: {text!r}")
        moment = datetime.combine(now.date(), time(hour, minute), tzinfo=UTC)
        return moment + timedelta(days=1) if moment <= now else moment
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
