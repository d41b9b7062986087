"""docs/retries.md's table of the two budgets says what the settings' defaults and the flow budget do."""

from __future__ import annotations

from pathlib import Path

from workers.runtime.retrying import THROTTLED_MAX_BACKOFF_MS, RetryBudget
from workers.settings import Settings

PAGE = Path(__file__).resolve().parents[2] / "docs" / "retries.md"


def row(name: str) -> list[str]:
    [line] = [line for line in PAGE.read_text().splitlines() if line.startswith(f"| **{name}**")]
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_the_flow_row_gives_the_defaults_of_the_flow_budget() -> None:
    fields = Settings.model_fields
    _name, _what, attempts, first, longest, window, _then, settings = row("flow")

    assert attempts == str(fields["max_attempts"].default)
    assert first == f"{fields['retry_min_backoff_ms'].default // 1000} s"
    assert longest == f"{fields['retry_max_backoff_ms'].default // 60_000} min"
    assert window == f"{fields['retry_window_seconds'].default // 60} min"
    for name in ("max_attempts", "retry_min_backoff_ms", "retry_max_backoff_ms", "retry_window_seconds"):
        assert f"FLOWFLEET_{name.upper()}" in settings


def test_the_delivery_row_gives_the_defaults_of_the_delivery_budget() -> None:
    fields = Settings.model_fields
    _name, _what, _attempts, first, longest, window, _then, settings = row("delivery")

    assert first == f"{fields['delivery_min_backoff_ms'].default // 1000} s"
    assert longest == f"{fields['delivery_max_backoff_ms'].default // 60_000} min"
    assert {fields[f"{s}_delivery_budget_seconds"].default for s in ("erp", "channels", "notify", "payments")} == {
        int(window.split()[0]) * 3600
    }
    assert "FLOWFLEET_DELIVERY_MIN_BACKOFF_MS" in settings


def test_the_page_says_how_the_defaults_spread_the_attempts_and_caps_throttled_waits() -> None:
    defaults = Settings()
    budget = RetryBudget(
        max_attempts=defaults.max_attempts,
        min_backoff_ms=defaults.retry_min_backoff_ms,
        max_backoff_ms=defaults.retry_max_backoff_ms,
        window_ms=defaults.retry_window_seconds * 1000,
    )
    text = PAGE.read_text()

    spread = [budget.calibrated_ms(n) / 1000 for n in (1, 2, 3, 4)]
    assert f"about {spread[0]:.0f} s, {spread[1]:.0f} s, {spread[2]:.0f} s, {spread[3] / 60:.0f} min" in text
    assert f"each wait at most {THROTTLED_MAX_BACKOFF_MS // 60_000} min" in text
