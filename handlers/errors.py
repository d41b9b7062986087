"""The two ways a handler says no: never (permanent) or not yet (transient)."""

from __future__ import annotations


class PermanentError(Exception):
    """A business rejection or a downstream refusal: retrying cannot help, dead-letter it now."""


class TransientError(Exception):
    """Try later: a downstream outage, throttling or a lost connection.

    `retry_after` (seconds) is the earliest useful retry the other side asked for, if it said.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Throttled(TransientError):
    """The downstream asked us to slow down (a 429), or the fleet's own rate limit held the request back.

    Retrying later is the cure, so it does not spend the retry budget: it has a separate, larger cap.
    `system` names the downstream system that throttled.
    """

    def __init__(self, message: str, *, system: str, retry_after: float | None = None) -> None:
        super().__init__(message, retry_after=retry_after)
        self.system = system
