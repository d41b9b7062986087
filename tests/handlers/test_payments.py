"""Payments are authorized, captured in parts and refunded, never more money out than came in, in any currency."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from contracts.orders import OrderCreatedV2
from contracts.payments import PaymentAuthorizedV1, PaymentCapturedV1, PaymentFailedV1, PaymentRefundedV1
from handlers.errors import PermanentError, TransientError
from tests.support.fakes import Shop


def an_order(order_id: str = "ORD-1", *, currency: str = "EUR", total_minor: int = 5000) -> OrderCreatedV2:
    return OrderCreatedV2.model_validate(
        {
            "order_id": order_id,
            "channel": "marketplace:rakuten",
            "customer": {"customer_id": "C-9", "email": "kenji@example.jp"},
            "currency": currency,
            "lines": [{"line_id": "1", "sku": "TEE", "quantity": 1, "unit_price_minor": total_minor}],
            "total_minor": total_minor,
        }
    )


def authorized(amount: int, *, currency: str = "EUR", payment_id: str = "PAY-1") -> PaymentAuthorizedV1:
    return PaymentAuthorizedV1.model_validate(
        {"payment_id": payment_id, "order_id": "ORD-1", "amount_minor": amount, "currency": currency}
    )


def captured(capture_id: str, amount: int, *, currency: str = "EUR") -> PaymentCapturedV1:
    return PaymentCapturedV1.model_validate(
        {
            "capture_id": capture_id,
            "payment_id": "PAY-1",
            "order_id": "ORD-1",
            "amount_minor": amount,
            "currency": currency,
        }
    )


def refunded(refund_id: str, amount: int, *, currency: str = "EUR", rma_id: str | None = None) -> PaymentRefundedV1:
    return PaymentRefundedV1.model_validate(
        {
            "refund_id": refund_id,
            "payment_id": "PAY-1",
            "order_id": "ORD-1",
            "amount_minor": amount,
            "currency": currency,
            "rma_id": rma_id,
        }
    )


def failed(operation: str = "capture", code: str = "insufficient_funds") -> PaymentFailedV1:
    return PaymentFailedV1.model_validate(
        {"payment_id": "PAY-1", "order_id": "ORD-1", "operation": operation, "code": code}
    )


def shop_with_payment(authorized_minor: int = 5000, *, currency: str = "EUR") -> Shop:
    shop = Shop()
    shop.place(an_order(currency=currency, total_minor=authorized_minor))
    shop.authorize(authorized(authorized_minor, currency=currency))
    shop.erp.posts.clear()
    return shop


# Authorization


def test_an_authorization_is_kept_for_its_order_in_the_orders_currency() -> None:
    shop = shop_with_payment(5000)

    payment = shop.payment_book.get("PAY-1")
    assert payment is not None
    assert (payment.order_id, payment.currency, payment.authorized_minor, payment.status) == (
        "ORD-1",
        "EUR",
        5000,
        "authorized",
    )
    assert shop.erp.posts == []


def test_an_authorization_that_arrives_before_its_order_is_retried() -> None:
    shop = Shop()

    with pytest.raises(TransientError, match="authorization arrived before its order"):
        shop.authorize(authorized(5000))

    assert shop.payment_book.payments == {}


def test_an_authorization_in_another_currency_than_its_order_is_rejected() -> None:
    shop = Shop()
    shop.place(an_order(currency="EUR"))

    with pytest.raises(PermanentError, match="PAY-1 is in USD but order ORD-1 is in EUR"):
        shop.authorize(authorized(5000, currency="USD"))

    assert shop.payment_book.payments == {}


def test_a_failed_payment_cannot_be_revived_by_an_authorization() -> None:
    shop = Shop()
    shop.place(an_order())
    shop.fail(failed("authorization"))
    before = shop.snapshot()

    with pytest.raises(PermanentError, match="already failed"):
        shop.authorize(authorized(5000))

    assert shop.snapshot() == before


# Captures


def test_partial_captures_add_up_and_each_is_posted_to_the_erp_keyed_by_its_capture_id() -> None:
    shop = shop_with_payment(5000)

    shop.capture(captured("CAP-1", 2000))
    payment = shop.capture(captured("CAP-2", 3000))

    assert (payment.captured_minor, payment.status) == (5000, "captured")
    assert payment.operations == [("capture", "CAP-1", 2000), ("capture", "CAP-2", 3000)]
    assert shop.erp.posts == [
        (
            "/payments/captures",
            {
                "capture_id": "CAP-1",
                "payment_id": "PAY-1",
                "order_id": "ORD-1",
                "amount_minor": 2000,
                "currency": "EUR",
            },
            "payment-capture:CAP-1",
        ),
        (
            "/payments/captures",
            {
                "capture_id": "CAP-2",
                "payment_id": "PAY-1",
                "order_id": "ORD-1",
                "amount_minor": 3000,
                "currency": "EUR",
            },
            "payment-capture:CAP-2",
        ),
    ]


def test_a_capture_beyond_what_was_authorized_is_rejected_and_changes_nothing() -> None:
    shop = shop_with_payment(5000)
    shop.capture(captured("CAP-1", 4000))
    before = shop.snapshot()

    with pytest.raises(PermanentError, match="to 5001, over the 5000 authorized"):
        shop.capture(captured("CAP-2", 1001))

    assert shop.snapshot() == before


def test_a_capture_before_its_authorization_is_retried_with_a_reason_that_says_so() -> None:
    shop = Shop()
    shop.place(an_order())

    with pytest.raises(
        TransientError, match="PAY-1 is not authorized yet: the capture arrived before its authorization"
    ):
        shop.capture(captured("CAP-1", 100))

    assert shop.payment_book.payments == {}
    assert "/payments/captures" not in shop.erp.paths()


def test_a_capture_that_overtook_its_authorization_applies_once_the_authorization_arrives() -> None:
    shop = Shop()
    shop.place(an_order())
    with pytest.raises(TransientError):
        shop.capture(captured("CAP-1", 100))

    shop.authorize(authorized(5000))
    payment = shop.capture(captured("CAP-1", 100))

    assert payment.captured_minor == 100


def test_a_capture_in_another_currency_than_its_payment_is_rejected() -> None:
    shop = shop_with_payment(5000)
    before = shop.snapshot()

    with pytest.raises(PermanentError, match="capture in USD for payment PAY-1, which is in EUR"):
        shop.capture(captured("CAP-1", 100, currency="USD"))

    assert shop.snapshot() == before


# Refunds


def test_refunds_are_posted_to_the_erp_keyed_by_the_refund_id_with_the_rma() -> None:
    shop = shop_with_payment(5000)
    shop.capture(captured("CAP-1", 5000))
    shop.erp.posts.clear()

    payment = shop.refund(refunded("REF-1", 1500, rma_id="RMA-7"))

    assert (payment.refunded_minor, payment.status) == (1500, "captured")
    assert shop.erp.posts == [
        (
            "/payments/refunds",
            {
                "refund_id": "REF-1",
                "payment_id": "PAY-1",
                "order_id": "ORD-1",
                "rma_id": "RMA-7",
                "amount_minor": 1500,
                "currency": "EUR",
            },
            "payment-refund:REF-1",
        )
    ]


def test_refunding_everything_captured_marks_the_payment_refunded() -> None:
    shop = shop_with_payment(5000)
    shop.capture(captured("CAP-1", 3000))

    shop.refund(refunded("REF-1", 1000))
    payment = shop.refund(refunded("REF-2", 2000))

    assert (payment.refunded_minor, payment.status) == (3000, "refunded")


def test_a_refund_beyond_what_was_captured_so_far_waits_for_a_capture_and_changes_nothing() -> None:
    shop = shop_with_payment(5000)
    shop.capture(captured("CAP-1", 2000))
    shop.refund(refunded("REF-1", 1500))
    before = shop.snapshot()

    with pytest.raises(TransientError, match=r"over the 2000 captured so far; waiting for a capture"):
        shop.refund(refunded("REF-2", 501))

    assert shop.snapshot() == before


def test_a_refund_that_overtook_its_capture_applies_once_the_capture_arrives() -> None:
    shop = shop_with_payment(5000)
    with pytest.raises(TransientError, match="waiting for a capture"):
        shop.refund(refunded("REF-1", 2000))

    shop.capture(captured("CAP-1", 2000))
    payment = shop.refund(refunded("REF-1", 2000))

    assert (payment.captured_minor, payment.refunded_minor) == (2000, 2000)


def test_a_refund_before_its_authorization_is_retried() -> None:
    shop = Shop()
    shop.place(an_order())

    with pytest.raises(TransientError, match="the refund arrived before its authorization"):
        shop.refund(refunded("REF-1", 100))


def test_a_refund_in_another_currency_than_its_payment_is_rejected() -> None:
    shop = shop_with_payment(5000)
    shop.capture(captured("CAP-1", 5000))

    with pytest.raises(PermanentError, match="refund in GBP"):
        shop.refund(refunded("REF-1", 100, currency="GBP"))


# Failures


def test_a_failed_payment_refuses_further_captures() -> None:
    shop = shop_with_payment(5000)
    shop.capture(captured("CAP-1", 2000))
    shop.fail(failed("capture"))
    before = shop.snapshot()

    with pytest.raises(PermanentError, match="PAY-1 has failed; capture CAP-2 is refused"):
        shop.capture(captured("CAP-2", 1000))

    assert shop.snapshot() == before


def test_money_captured_before_a_payment_failed_can_still_be_refunded() -> None:
    shop = shop_with_payment(5000)
    shop.capture(captured("CAP-1", 2000))
    shop.fail(failed("capture"))
    shop.erp.posts.clear()

    payment = shop.refund(refunded("REF-1", 2000))

    assert payment.refunded_minor == 2000
    assert [key for _path, _payload, key in shop.erp.posts] == ["payment-refund:REF-1"]


def test_a_failed_payment_notifies_the_customer_once_per_operation() -> None:
    shop = shop_with_payment(5000)

    payment = shop.fail(failed("capture", code="card_expired"))

    assert payment.status == "failed"
    assert payment.authorized_minor == 5000
    assert shop.notify.posts == [
        (
            "/notifications",
            {
                "template": "payment_failed",
                "order_id": "ORD-1",
                "customer_id": "C-9",
                "operation": "capture",
                "code": "card_expired",
            },
            "notify:payment-failed:PAY-1:capture",
        )
    ]


def test_a_failure_for_an_authorization_never_seen_is_kept_in_the_orders_currency() -> None:
    shop = Shop()
    shop.place(an_order(currency="JPY"))

    payment = shop.fail(failed("authorization", code="do_not_honor"))

    assert (payment.currency, payment.status, payment.authorized_minor) == ("JPY", "failed", 0)


def test_a_failure_that_arrives_before_its_order_is_retried_and_notifies_nobody() -> None:
    shop = Shop()

    with pytest.raises(TransientError, match="failure arrived before its order"):
        shop.fail(failed())

    assert shop.notify.posts == []
    assert shop.payment_book.payments == {}


def test_a_capture_for_a_payment_whose_authorization_failed_is_refused_at_once() -> None:
    shop = Shop()
    shop.place(an_order())
    shop.fail(failed("authorization", code="do_not_honor"))

    with pytest.raises(PermanentError, match="failed"):
        shop.capture(captured("CAP-1", 100))

    assert "/payments/captures" not in shop.erp.paths()


# Money: integers in the currency's minor unit, any currency


def test_a_yen_order_is_authorized_captured_and_refunded_in_whole_yen() -> None:
    shop = shop_with_payment(12_800, currency="JPY")

    shop.capture(captured("CAP-1", 12_800, currency="JPY"))
    payment = shop.refund(refunded("REF-1", 800, currency="JPY"))

    assert (payment.currency, payment.captured_minor, payment.refunded_minor) == ("JPY", 12_800, 800)
    amounts = [payload["amount_minor"] for _path, payload, _key in shop.erp.posts]
    assert amounts == [12_800, 800]
    assert all(type(amount) is int for amount in amounts)
    assert {payload["currency"] for _path, payload, _key in shop.erp.posts} == {"JPY"}


def test_two_orders_in_different_currencies_keep_their_payments_apart() -> None:
    shop = Shop()
    shop.place(an_order("ORD-1", currency="EUR"))
    shop.place(an_order("ORD-2", currency="GBP"))
    shop.authorize(authorized(5000, currency="EUR"))
    shop.authorize(
        PaymentAuthorizedV1.model_validate(
            {"payment_id": "PAY-2", "order_id": "ORD-2", "amount_minor": 4200, "currency": "GBP"}
        )
    )

    eur, gbp = shop.payment_book.get("PAY-1"), shop.payment_book.get("PAY-2")

    assert eur is not None and gbp is not None
    assert (eur.currency, eur.authorized_minor) == ("EUR", 5000)
    assert (gbp.currency, gbp.authorized_minor) == ("GBP", 4200)


@pytest.mark.parametrize("amount", [19.99, 20.0, "1999", 0, -5])
def test_a_money_amount_must_be_a_positive_integer_of_minor_units(amount: object) -> None:
    with pytest.raises(ValidationError):
        PaymentCapturedV1.model_validate(
            {
                "capture_id": "CAP-1",
                "payment_id": "PAY-1",
                "order_id": "ORD-1",
                "amount_minor": amount,
                "currency": "EUR",
            }
        )


# Property: never more money out than came in

operations = st.lists(
    st.tuples(st.sampled_from(["capture", "refund"]), st.integers(1, 3000)),
    max_size=25,
)


@settings(max_examples=200)
@given(st.integers(1, 10_000), operations)
def test_no_sequence_of_captures_and_refunds_moves_more_money_than_came_in(
    authorized_minor: int, steps: list[tuple[str, int]]
) -> None:
    shop = shop_with_payment(authorized_minor)
    captured_total = refunded_total = 0

    for number, (kind, amount) in enumerate(steps):
        before = shop.snapshot()
        try:
            if kind == "capture":
                shop.capture(captured(f"CAP-{number}", amount))
                captured_total += amount
            else:
                shop.refund(refunded(f"REF-{number}", amount))
                refunded_total += amount
        except (PermanentError, TransientError):
            assert shop.snapshot() == before
        payment = shop.payment_book.get("PAY-1")
        assert payment is not None
        assert 0 <= payment.refunded_minor <= payment.captured_minor <= payment.authorized_minor
        assert (payment.captured_minor, payment.refunded_minor) == (captured_total, refunded_total)
        erp_total = {
            path: sum(payload["amount_minor"] for p, payload, _key in shop.erp.posts if p == path)
            for path in ("/payments/captures", "/payments/refunds")
        }
        assert erp_total == {"/payments/captures": captured_total, "/payments/refunds": refunded_total}


def test_a_capture_for_a_payment_whose_authorization_was_declined_is_refused_at_once_not_retried() -> None:
    shop = Shop()
    shop.place(an_order())
    shop.fail(failed("authorization", "card_declined"))
    before = shop.snapshot()

    with pytest.raises(PermanentError, match="PAY-1 has failed; capture CAP-1 is refused"):
        shop.capture(captured("CAP-1", 1000))

    assert shop.snapshot() == before


@pytest.mark.parametrize("operation", ["capture", "refund"])
def test_a_capture_or_refund_naming_another_order_than_its_payment_is_rejected(operation: str) -> None:
    shop = shop_with_payment(5000)
    shop.capture(captured("CAP-1", 2000))
    data = {"payment_id": "PAY-1", "order_id": "ORD-OTHER", "amount_minor": 100, "currency": "EUR"}
    before = shop.snapshot()

    with pytest.raises(PermanentError, match="names order ORD-OTHER, but payment PAY-1 is for ORD-1"):
        if operation == "capture":
            shop.capture(PaymentCapturedV1.model_validate({**data, "capture_id": "CAP-2"}))
        else:
            shop.refund(PaymentRefundedV1.model_validate({**data, "refund_id": "REF-1"}))

    assert shop.snapshot() == before
