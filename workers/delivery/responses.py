"""What a downstream answer means: 2xx and 409 done, 408/429/5xx transient (429: throttled), other 4xx permanent."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from handlers.errors import PermanentError, Throttled, TransientError

#: A Retry-After beyond this is capped: the retry budget, not the other side, bounds the wait.
MAX_RETRY_AFTER_SECONDS = 600.0


def raise_for_status(system: str, path: str, status: int, retry_after: str | None, detail: str = "") -> str:
    """Return the result label for metrics when the effect is done; raise the right error otherwise."""
    if 200 <= status < 300:
        return "ok"
    if status == 409:
        return "already_applied"
    where = f"{system} POST {path} answered {status}"
    if status == 429:
        raise Throttled(f"{where}{_detail(detail)}", system=system, retry_after=parse_retry_after(retry_after))
    if status == 408 or status >= 500:
        raise TransientError(f"{where}{_detail(detail)}", retry_after=parse_retry_after(retry_after))
    raise PermanentError(f"{where}{_detail(detail)}")


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), or None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return min(float(value), MAX_RETRY_AFTER_SECONDS)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # an HTTP-date is always GMT, even when it fails to say so
        when = when.replace(tzinfo=UTC)
    seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


def _detail(text: str) -> str:
    text = " ".join(text.split())[:200]
    return f": {text}" if text else ""
