"""Transient failures back off exponentially with jitter, honour Retry-After, stop when the budget ends."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workers.runtime.retrying import THROTTLED_MAX_BACKOFF_MS, RetryBudget, growth

BUDGET = RetryBudget(max_attempts=8, min_backoff_ms=1_000, max_backoff_ms=30_000, window_ms=3_600_000)


def delay(
    budget: RetryBudget = BUDGET, *, attempt: int, elapsed_ms: int = 0, retry_after_s: float | None = None
) -> int | None:
    start = 1_000_000
    return budget.next_delay_ms(
        attempt=attempt, first_failed_ms=start, now_ms=start + elapsed_ms, retry_after_s=retry_after_s
    )


@pytest.fixture
def jitter_at(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    """Pins the jitter: `jitter_at("low")`, `jitter_at("high")` (an end of its range) or `jitter_at("none")` (1)."""

    def pin(end: str) -> None:
        def uniform(low: float, high: float) -> float:
            return {"low": low, "high": high}.get(end, 1.0)

        monkeypatch.setattr(random, "uniform", uniform)

    return pin


#: The shipped defaults: 6 attempts within 20 minutes, the first retry after 1 s.
DEFAULTS = RetryBudget(max_attempts=6, min_backoff_ms=1_000, max_backoff_ms=1_200_000, window_ms=1_200_000)


def tries_until_spent(budget: RetryBudget) -> tuple[int, int]:
    """Fail every try at once: (how many attempts were made, ms from the first failure to the last try)."""
    attempt, elapsed = 1, 0
    while (wait := delay(budget, attempt=attempt, elapsed_ms=elapsed)) is not None:
        attempt, elapsed = attempt + 1, elapsed + wait
    return attempt, elapsed


def test_the_first_retry_waits_the_minimum_backoff_give_or_take_its_jitter() -> None:
    delays = {delay(DEFAULTS, attempt=1) for _ in range(200)}

    assert all(d is not None and 750 <= d <= 1_250 for d in delays)
    assert len(delays) > 1, "the delay is jittered"


def test_the_retries_grow_at_the_rate_that_makes_them_add_up_to_the_window(jitter_at: Callable[[str], None]) -> None:
    jitter_at("none")
    rate = growth(1_000, 1_200_000, 5)

    waits = [delay(DEFAULTS, attempt=n, elapsed_ms=0) for n in (1, 2, 3, 4)]

    assert waits == [int(1_000 * rate**k) for k in range(4)]
    assert 1_000 * (rate**5 - 1) / (rate - 1) == pytest.approx(1_200_000, rel=1e-6)


def test_a_twenty_minute_window_is_about_twenty_minutes_with_every_attempt_made() -> None:
    """The issue's complaint: 1 s doubling over 6 attempts spent a "20-minute" budget in 26 s."""
    for _ in range(200):
        attempts, elapsed = tries_until_spent(DEFAULTS)
        assert attempts == 6
        assert 0.9 * 1_200_000 <= elapsed <= 1_200_000


def test_a_small_window_set_by_the_settings_is_spread_the_same_way() -> None:
    budget = RetryBudget(max_attempts=4, min_backoff_ms=10, max_backoff_ms=10_000, window_ms=2_000)

    attempts, elapsed = tries_until_spent(budget)

    assert attempts == 4
    assert 1_800 <= elapsed <= 2_000


def test_the_last_try_lands_near_the_end_of_what_is_left_of_the_window(jitter_at: Callable[[str], None]) -> None:
    jitter_at("low")

    assert delay(DEFAULTS, attempt=5, elapsed_ms=200_000) == 900_000


def test_the_delay_is_capped_by_the_maximum_backoff(jitter_at: Callable[[str], None]) -> None:
    jitter_at("high")
    budget = RetryBudget(max_attempts=6, min_backoff_ms=1_000, max_backoff_ms=30_000, window_ms=1_200_000)

    assert delay(budget, attempt=4) == 30_000
    assert delay(budget, attempt=5) == 30_000


def test_no_delay_is_offered_once_the_attempts_are_used_up() -> None:
    assert delay(attempt=7) is not None
    assert delay(attempt=8) is None
    assert delay(attempt=9) is None


def test_no_delay_is_offered_once_the_window_is_spent() -> None:
    budget = RetryBudget(max_attempts=50, min_backoff_ms=1_000, max_backoff_ms=30_000, window_ms=60_000)

    assert delay(budget, attempt=3, elapsed_ms=59_999) == 1
    assert delay(budget, attempt=3, elapsed_ms=60_000) is None


def test_retry_after_raises_the_delay_to_at_least_what_the_other_side_asked_for() -> None:
    assert delay(attempt=1, retry_after_s=20) == 20_000


def test_a_short_retry_after_does_not_shorten_the_backoff(jitter_at: Callable[[str], None]) -> None:
    jitter_at("none")

    assert delay(DEFAULTS, attempt=3, retry_after_s=0.5) == int(1_000 * growth(1_000, 1_200_000, 5) ** 2)


def test_a_retry_after_beyond_the_window_ends_the_retries() -> None:
    budget = RetryBudget(max_attempts=10, min_backoff_ms=100, max_backoff_ms=1_000, window_ms=60_000)

    assert delay(budget, attempt=1, retry_after_s=61) is None


budgets = st.builds(
    RetryBudget,
    max_attempts=st.integers(1, 50),
    min_backoff_ms=st.integers(1, 10_000),
    max_backoff_ms=st.integers(10_000, 600_000),
    window_ms=st.integers(1, 86_400_000),
)


@given(budgets, st.integers(1, 55), st.integers(0, 86_400_000), st.none() | st.floats(0, 600))
def test_any_offered_delay_respects_the_attempts_backoff_window_and_retry_after(
    budget: RetryBudget, attempt: int, elapsed_ms: int, retry_after_s: float | None
) -> None:
    result = delay(budget, attempt=attempt, elapsed_ms=elapsed_ms, retry_after_s=retry_after_s)

    if result is None:
        return
    remaining = budget.window_ms - elapsed_ms
    assert attempt < budget.max_attempts
    assert 0 < result <= remaining
    assert result >= min(budget.min_backoff_ms, remaining)
    if retry_after_s is None:
        assert result <= budget.max_backoff_ms or result == min(budget.min_backoff_ms, remaining)
    else:
        assert result >= int(retry_after_s * 1000)


# --- throttled tries: their own cap, never the attempts or the window --------------------------------


def throttled_delay(budget: RetryBudget = BUDGET, *, throttles: int, retry_after_s: float | None = None) -> int | None:
    return budget.next_throttled_delay_ms(throttles=throttles, retry_after_s=retry_after_s)


def test_throttled_tries_are_retried_up_to_their_own_cap_whatever_the_attempts() -> None:
    budget = RetryBudget(max_attempts=1, min_backoff_ms=100, max_backoff_ms=1_000, window_ms=1, max_throttled_retries=3)

    assert [throttled_delay(budget, throttles=n) is not None for n in (1, 2, 3, 4, 5)] == [
        True,
        True,
        True,
        False,
        False,
    ]


def test_the_throttle_cap_defaults_to_thirty() -> None:
    assert throttled_delay(throttles=30) is not None
    assert throttled_delay(throttles=31) is None


@pytest.mark.parametrize("end", ["low", "high"])
def test_a_throttled_retry_backs_off_exponentially_with_jitter(jitter_at: Callable[[str], None], end: str) -> None:
    jitter_at(end)

    assert [throttled_delay(throttles=n) for n in (1, 2, 3, 6, 20)] == (
        [500, 1_000, 2_000, 15_000, 15_000] if end == "low" else [1_000, 2_000, 4_000, 30_000, 30_000]
    )


def test_a_throttled_retry_waits_at_least_the_retry_after(jitter_at: Callable[[str], None]) -> None:
    jitter_at("high")

    assert throttled_delay(throttles=1, retry_after_s=7.5) == 7_500
    assert throttled_delay(throttles=3, retry_after_s=0.5) == 4_000


def test_a_throttled_retry_never_waits_beyond_the_maximum_backoff() -> None:
    assert throttled_delay(throttles=1, retry_after_s=600) == 30_000


@given(budgets, st.integers(1, 40), st.none() | st.floats(0, 600))
def test_any_throttled_delay_respects_the_cap_the_backoff_and_retry_after(
    budget: RetryBudget, throttles: int, retry_after_s: float | None
) -> None:
    result = throttled_delay(budget, throttles=throttles, retry_after_s=retry_after_s)

    assert (result is None) == (throttles > budget.max_throttled_retries)
    if result is None:
        return
    cap = min(budget.max_backoff_ms, THROTTLED_MAX_BACKOFF_MS)
    assert result <= cap
    assert result >= min(cap, budget.min_backoff_ms * 2 ** (throttles - 1)) // 2
    if retry_after_s is not None:
        assert result >= min(int(retry_after_s * 1000), cap)
