"""When to retry a transient failure: attempts spread over the flow's window with jitter, Retry-After, a bound.

The window is the budget: the delays grow geometrically from the minimum backoff at the rate that makes
the attempts span the window, and the last try lands near its end, so "20 minutes" is about 20 minutes.
Since the outbox carries downstream outages, this budget only covers waits inside a flow (an event that
overtook the one it depends on). Throttled failures (the other side asked us to slow down) have their own
cap and leave the budget alone.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache

#: A throttled retry never waits longer than this (nor than the maximum backoff).
THROTTLED_MAX_BACKOFF_MS = 120_000
#: Each delay is its calibrated value times a factor drawn from this range: copies failing together spread.
JITTER = (0.75, 1.25)
#: The last try lands in this last part of what is left of the window.
LAST_TRY_JITTER = (0.9, 1.0)


@dataclass(frozen=True)
class RetryBudget:
    """A flow's retry budget: a window measured from the first failure, the attempts spread over it, and
    backoff bounds (the first delay, and a cap on any one).

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
        remaining = first_failed_ms + self.window_ms - now_ms
        if attempt >= self.max_attempts or remaining <= 0:
            return None
        if attempt == self.max_attempts - 1:
            delay = int(remaining * random.uniform(*LAST_TRY_JITTER))
        else:
            delay = int(self.calibrated_ms(attempt) * random.uniform(*JITTER))
        delay = max(min(delay, self.max_backoff_ms, remaining), min(self.min_backoff_ms, remaining))
        if retry_after_s is not None:
            delay = max(delay, int(retry_after_s * 1000))
        if delay > remaining:
            return None
        return delay

    def calibrated_ms(self, attempt: int) -> float:
        """The delay after failed attempt `attempt` before jitter: the minimum, growing at the rate that makes
        the retries add up to the window."""
        return self.min_backoff_ms * growth(self.min_backoff_ms, self.window_ms, self.max_attempts - 1) ** (attempt - 1)

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
        return min(delay, self.max_backoff_ms, THROTTLED_MAX_BACKOFF_MS)

    def _backoff_ms(self, tries: int) -> int:
        """Exponential backoff with jitter in the upper half: doubling from the minimum, capped at the maximum."""
        ceiling = min(self.max_backoff_ms, self.min_backoff_ms * 2 ** min(max(tries - 1, 0), 40))
        return int(random.uniform(ceiling / 2, ceiling))


@lru_cache(maxsize=64)
def growth(min_backoff_ms: int, window_ms: int, retries: int) -> float:
    """The ratio r with min * (1 + r + ... + r^(retries-1)) = window; 1 when even equal delays fill it."""
    if retries <= 1 or min_backoff_ms * retries >= window_ms:
        return 1.0
    low, high = 1.0, float(window_ms) / min_backoff_ms + 1
    for _ in range(100):
        ratio = (low + high) / 2
        low, high = (ratio, high) if _series_ms(min_backoff_ms, ratio, retries, window_ms) < window_ms else (low, ratio)
    return (low + high) / 2


def _series_ms(first_ms: int, ratio: float, terms: int, stop_above: int) -> float:
    """first + first*ratio + ... (`terms` of them), summed only until it passes `stop_above`."""
    total, term = 0.0, float(first_ms)
    for _ in range(terms):
        total += term
        if total > stop_above:
            break
        term *= ratio
    return total
