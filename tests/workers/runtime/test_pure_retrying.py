"""Transient failures back off exponentially with jitter, honour Retry-After, stop when the budget ends."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workers.runtime.retrying import RetryBudget

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
    """Pins the jitter to one end of its range: `jitter_at("low")` or `jitter_at("high")`."""

    def pin(end: str) -> None:
        monkeypatch.setattr(random, "uniform", lambda low, high: low if end == "low" else high)

    return pin


@pytest.mark.parametrize(("attempt", "ceiling"), [(1, 1_000), (2, 2_000), (3, 4_000), (4, 8_000), (5, 16_000)])
def test_the_delay_doubles_with_each_attempt_and_jitters_within_the_upper_half(attempt: int, ceiling: int) -> None:
    delays = {delay(attempt=attempt) for _ in range(200)}

    assert all(d is not None and ceiling // 2 <= d <= ceiling for d in delays)
    assert len(delays) > 1, "the delay is jittered"


@pytest.mark.parametrize("end", ["low", "high"])
def test_the_jitter_spans_exactly_half_the_ceiling_to_the_ceiling(jitter_at: Callable[[str], None], end: str) -> None:
    jitter_at(end)

    assert [delay(attempt=n) for n in (1, 2, 3, 4)] == (
        [500, 1_000, 2_000, 4_000] if end == "low" else [1_000, 2_000, 4_000, 8_000]
    )


def test_the_delay_is_capped_by_the_maximum_backoff(jitter_at: Callable[[str], None]) -> None:
    jitter_at("high")

    assert delay(attempt=6) == 30_000
    assert delay(attempt=7) == 30_000


def test_no_delay_is_offered_once_the_attempts_are_used_up() -> None:
    assert delay(attempt=7) is not None
    assert delay(attempt=8) is None
    assert delay(attempt=9) is None


def test_no_delay_is_offered_when_the_retry_would_land_outside_the_window(
    jitter_at: Callable[[str], None],
) -> None:
    jitter_at("high")
    budget = RetryBudget(max_attempts=50, min_backoff_ms=1_000, max_backoff_ms=30_000, window_ms=60_000)

    assert delay(budget, attempt=3, elapsed_ms=56_000) == 4_000
    assert delay(budget, attempt=3, elapsed_ms=56_001) is None


def test_retry_after_raises_the_delay_to_at_least_what_the_other_side_asked_for() -> None:
    assert delay(attempt=1, retry_after_s=20) == 20_000


def test_a_short_retry_after_does_not_shorten_the_backoff(jitter_at: Callable[[str], None]) -> None:
    jitter_at("low")

    assert delay(attempt=4, retry_after_s=0.5) == 4_000


def test_a_retry_after_beyond_the_window_ends_the_retries() -> None:
    budget = RetryBudget(max_attempts=10, min_backoff_ms=100, max_backoff_ms=1_000, window_ms=60_000)

    assert delay(budget, attempt=1, retry_after_s=61) is None


budgets = st.builds(
    RetryBudget,
    max_attempts=st.integers(1, 20),
    min_backoff_ms=st.integers(1, 10_000),
    max_backoff_ms=st.integers(10_000, 600_000),
    window_ms=st.integers(1, 86_400_000),
)


@given(budgets, st.integers(1, 25), st.integers(0, 86_400_000), st.none() | st.floats(0, 600))
def test_any_offered_delay_respects_the_attempts_backoff_window_and_retry_after(
    budget: RetryBudget, attempt: int, elapsed_ms: int, retry_after_s: float | None
) -> None:
    result = delay(budget, attempt=attempt, elapsed_ms=elapsed_ms, retry_after_s=retry_after_s)

    if result is None:
        return
    ceiling = min(budget.max_backoff_ms, budget.min_backoff_ms * 2 ** (attempt - 1))
    assert attempt < budget.max_attempts
    assert elapsed_ms + result <= budget.window_ms
    assert result >= ceiling // 2
    if retry_after_s is None:
        assert result <= ceiling
    else:
        assert result >= int(retry_after_s * 1000)
        assert result <= max(ceiling, int(retry_after_s * 1000))


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
    assert result <= budget.max_backoff_ms
    assert result >= min(budget.max_backoff_ms, budget.min_backoff_ms * 2 ** (throttles - 1)) // 2
    if retry_after_s is not None:
        assert result >= min(int(retry_after_s * 1000), budget.max_backoff_ms)
