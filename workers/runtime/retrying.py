"""When to retry a transient failure: exponential backoff with jitter, Retry-After, a bounded budget.

Throttled failures (the other side asked us to slow down) have their own cap and leave the budget alone.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryBudget:
    """A flow's retry budget: attempts, backoff bounds, and a window measured from the first failure.

    Throttled tries count against `max_throttled_retries` instead, and neither against the attempts nor the
    window: a downstream system that is busy says nothing about the message.
    """

    max_attempts: int
    min_backoff_ms: int
    max_backoff_ms: int
    window_ms: int
    max_throttled_retries: int = 30

    def next_delay_ms(
        self, *, attempt: int, first_failed_ms: int, now_ms: int, retry_after_s: float | None = None
    ) -> int | None:
        """Delay before the next try after failed attempt number `attempt`, or None when the budget is spent."""
        if attempt >= self.max_attempts:
            return None
        delay = self._backoff_ms(attempt)
        if retry_after_s is not None:
            delay = max(delay, int(retry_after_s * 1000))
        if now_ms + delay - first_failed_ms > self.window_ms:
            return None
        return delay

    def next_throttled_delay_ms(self, *, throttles: int, retry_after_s: float | None = None) -> int | None:
        """Delay before the next try after the `throttles`-th throttled one, or None once the throttle cap is spent.

        At least the Retry-After the other side asked for, but never beyond the maximum backoff: the
        fleet-wide pause holds a retry that comes back early, without sending it.
        """
        if throttles > self.max_throttled_retries:
            return None
        delay = self._backoff_ms(throttles)
        if retry_after_s is not None:
            delay = max(delay, int(retry_after_s * 1000))
        return min(delay, self.max_backoff_ms)

    def _backoff_ms(self, tries: int) -> int:
        """Exponential backoff with jitter in the upper half: doubling from the minimum, capped at the maximum."""
        ceiling = min(self.max_backoff_ms, self.min_backoff_ms * 2 ** min(max(tries - 1, 0), 40))
        return int(random.uniform(ceiling / 2, ceiling))
