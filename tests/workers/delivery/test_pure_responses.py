"""A downstream answer is read the same way everywhere: done, try later (with Retry-After), or never."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pytest

from handlers.errors import PermanentError, TransientError
from workers.delivery.fake import FakeDownstream
from workers.delivery.responses import MAX_RETRY_AFTER_SECONDS, parse_retry_after, raise_for_status

NOW = datetime(2026, 11, 25, 10, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize("status", [200, 201, 202, 204, 299])
def test_a_2xx_answer_means_the_effect_is_done(status: int) -> None:
    assert raise_for_status("erp", "/orders", status, None) == "ok"


def test_a_409_means_the_effect_was_already_applied_and_counts_as_done() -> None:
    assert raise_for_status("erp", "/orders", 409, None) == "already_applied"


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_timeouts_throttling_and_server_errors_are_transient(status: int) -> None:
    with pytest.raises(TransientError) as caught:
        raise_for_status("erp", "/orders", status, None)

    assert str(caught.value) == f"erp POST /orders answered {status}"
    assert caught.value.retry_after is None


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 422, 301])
def test_other_answers_are_permanent(status: int) -> None:
    with pytest.raises(PermanentError, match=f"erp POST /orders answered {status}"):
        raise_for_status("erp", "/orders", status, None)


def test_a_transient_answer_carries_the_retry_after_it_sent() -> None:
    with pytest.raises(TransientError) as caught:
        raise_for_status("channels", "/prices", 429, "30")

    assert caught.value.retry_after == 30.0


def test_the_answers_detail_is_kept_on_one_short_line() -> None:
    detail = "invalid VAT id\n\n   for customer   C-1 " + "x" * 500

    with pytest.raises(PermanentError) as caught:
        raise_for_status("erp", "/orders", 422, None, detail)

    message = str(caught.value)
    assert message.startswith("erp POST /orders answered 422: invalid VAT id for customer C-1 x")
    assert "\n" not in message
    assert len(message) == len("erp POST /orders answered 422: ") + 200


@pytest.mark.parametrize(("header", "seconds"), [("0", 0.0), ("5", 5.0), (" 120 ", 120.0)])
def test_retry_after_in_seconds_is_read_as_seconds(header: str, seconds: float) -> None:
    assert parse_retry_after(header) == seconds


def test_retry_after_as_an_http_date_is_the_time_until_then() -> None:
    assert parse_retry_after("Wed, 25 Nov 2026 10:01:30 GMT", now=NOW) == 90.0


def test_retry_after_as_a_date_in_the_past_means_now() -> None:
    assert parse_retry_after("Wed, 25 Nov 2026 09:00:00 GMT", now=NOW) == 0.0


@pytest.mark.parametrize("header", [None, "", "soon", "1.5", "-3", "Someday, 99 Foo 2026"])
def test_an_absent_or_unreadable_retry_after_is_none(header: str | None) -> None:
    assert parse_retry_after(header, now=NOW) is None


def test_a_huge_retry_after_in_seconds_is_capped() -> None:
    assert parse_retry_after("86400") == MAX_RETRY_AFTER_SECONDS
    assert parse_retry_after("9" * 400) == MAX_RETRY_AFTER_SECONDS


def test_a_far_future_retry_after_date_is_capped() -> None:
    assert parse_retry_after("Fri, 01 Jan 2100 00:00:00 GMT", now=NOW) == MAX_RETRY_AFTER_SECONDS


@pytest.mark.parametrize("header", ["Wed, 25 Nov 2026 10:01:30", "Wed, 25 Nov 2026 10:01:30 -0000"])
def test_a_retry_after_date_without_a_usable_zone_does_not_crash_the_parser(header: str) -> None:
    assert parse_retry_after(header, now=NOW) in (None, 90.0)


def test_a_retry_after_of_unicode_digits_float_cannot_read_is_unreadable_not_a_crash() -> None:
    assert parse_retry_after("²") is None


def test_a_503_with_an_odd_retry_after_is_still_a_transient_error() -> None:
    with pytest.raises(TransientError):
        raise_for_status("erp", "/orders", 503, "Wed, 25 Nov 2026 10:01:30")


# --- FakeDownstream: the in-process twin the demo uses ---------------------------------------------


def scripted(*statuses: int) -> Any:
    """Answers each request for a key with the next status in the script (then the last one, forever)."""

    def responder(_path: str, _payload: Mapping[str, Any], _key: str, attempt: int) -> int:
        return statuses[min(attempt, len(statuses)) - 1]

    return responder


def test_the_fake_applies_an_effect_once_and_answers_409_to_a_repeat() -> None:
    erp = FakeDownstream("erp")

    erp.post("/orders", {"order_id": "ORD-1", "total": 10}, idempotency_key="order-export:ORD-1")
    erp.post("/orders", {"order_id": "ORD-1", "total": 99}, idempotency_key="order-export:ORD-1")

    assert erp.applied == {"order-export:ORD-1": {"order_id": "ORD-1", "total": 10}}
    assert erp.requests == [("/orders", "order-export:ORD-1", 200), ("/orders", "order-export:ORD-1", 409)]


def test_the_fake_applies_effects_with_different_keys_separately() -> None:
    erp = FakeDownstream("erp")

    erp.post("/orders", {"order_id": "ORD-1"}, idempotency_key="order-export:ORD-1")
    erp.post("/orders", {"order_id": "ORD-2"}, idempotency_key="order-export:ORD-2")

    assert set(erp.applied) == {"order-export:ORD-1", "order-export:ORD-2"}


def test_the_fake_raises_transient_errors_until_its_script_lets_the_effect_through() -> None:
    erp = FakeDownstream("erp", responder=scripted(503, 429, 200))

    with pytest.raises(TransientError):
        erp.post("/orders", {"n": 1}, idempotency_key="k")
    with pytest.raises(TransientError) as throttled:
        erp.post("/orders", {"n": 1}, idempotency_key="k")
    assert erp.applied == {}

    erp.post("/orders", {"n": 1}, idempotency_key="k")

    assert throttled.value.retry_after == 1.0
    assert erp.applied == {"k": {"n": 1}}
    assert [status for _path, _key, status in erp.requests] == [503, 429, 200]


def test_the_fake_refuses_permanently_without_applying() -> None:
    erp = FakeDownstream("erp", responder=scripted(422))

    with pytest.raises(PermanentError, match="erp POST /orders answered 422"):
        erp.post("/orders", {"n": 1}, idempotency_key="k")

    assert erp.applied == {}
