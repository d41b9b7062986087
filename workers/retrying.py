"""When to retry a transient failure: exponential backoff with jitter, Retry-After, a bounded budget."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryBudget:
    """A flow's retry budget: attempts, backoff bounds, and a window measured from the first failure."""

    max_attempts: int
    min_backoff_ms: int
    max_backoff_ms: int
    window_ms: int

    def next_delay_ms(
        self, *, attempt: int, first_failed_ms: int, now_ms: int, retry_after_s: float | None = None
    ) -> int | None:
        """Delay before the next try after failed attempt number `attempt`, or None when the budget is spent."""
        if attempt >= self.max_attempts:
            return None
        ceiling = min(self.max_backoff_ms, self.min_backoff_ms * 2 ** (attempt - 1))
        delay = int(random.uniform(ceiling / 2, ceiling))
        if retry_after_s is not None:
            delay = max(delay, int(retry_after_s * 1000))
        if now_ms + delay - first_failed_ms > self.window_ms:
            return None
        return delay
