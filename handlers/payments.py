"""Payments: authorize, capture (in parts), refund, fail — never more money out than came in.

Rules:
- Amounts are integers in the currency's minor unit; a payment's currency is its order's, and
  every capture and refund must be in that currency.
- Captures never add up to more than the authorization; refunds never to more than the captures.
- Events arrive out of order. An authorization for an order not seen yet, or a capture or refund
  for a payment not authorized yet, is retried for a bounded time (the retry budget), then
  dead-lettered with a reason that says what it waited for. A refund larger than what has been
  captured so far waits the same way, since the capture may still be on its way.
- A failed payment takes no further captures; money already captured can still be refunded.
  The customer is told when a payment fails.
- Captures and refunds are posted to the ERP, keyed by the capture or refund id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

from contracts.payments import PaymentAuthorizedV1, PaymentCapturedV1, PaymentFailedV1, PaymentRefundedV1
from handlers.downstream import Downstream
from handlers.errors import PermanentError, TransientError
from handlers.order_book import OrderBook

PaymentStatus = Literal["authorized", "captured", "refunded", "failed"]


@dataclass
class Payment:
    payment_id: str
    order_id: str
    currency: str
    authorized_minor: int = 0
    captured_minor: int = 0
    refunded_minor: int = 0
    status: PaymentStatus = "authorized"
    #: Each applied capture or refund: (kind, operation id, amount).
    operations: list[tuple[str, str, int]] = field(default_factory=list)


class PaymentBook(Protocol):
    """Where payments are kept; `get` locks the payment until the transaction ends."""

    def get(self, payment_id: str) -> Payment | None: ...

    def save(self, payment: Payment) -> None: ...


def authorize_payment(event: PaymentAuthorizedV1, *, payments: PaymentBook, orders: OrderBook) -> Payment:
    order = orders.get(event.order_id)
    if order is None:
        raise TransientError(f"order {event.order_id} is not known yet: the authorization arrived before its order")
    if event.currency != order.currency:
        raise PermanentError(
            f"payment {event.payment_id} is in {event.currency} but order {order.order_id} is in {order.currency}"
        )
    payment = payments.get(event.payment_id)
    if payment is not None and payment.status == "failed":
        raise PermanentError(f"payment {event.payment_id} already failed; an authorization cannot revive it")
    payment = payment or Payment(payment_id=event.payment_id, order_id=event.order_id, currency=event.currency)
    payment.authorized_minor = event.amount_minor
    payments.save(payment)
    return payment


def capture_payment(event: PaymentCapturedV1, *, payments: PaymentBook, erp: Downstream) -> Payment:
    found = payments.get(event.payment_id)
    if found is not None and found.status == "failed":
        raise PermanentError(f"payment {event.payment_id} has failed; capture {event.capture_id} is refused")
    payment = _authorized(found, event.payment_id, event.currency, "capture")
    _same_order(payment, event.order_id, f"capture {event.capture_id}")
    if payment.captured_minor + event.amount_minor > payment.authorized_minor:
        raise PermanentError(
            f"capture {event.capture_id} of {event.amount_minor} would take payment {payment.payment_id} to "
            f"{payment.captured_minor + event.amount_minor}, over the {payment.authorized_minor} authorized"
        )
    payment.captured_minor += event.amount_minor
    payment.status = "captured"
    payment.operations.append(("capture", event.capture_id, event.amount_minor))
    payments.save(payment)
    erp.post(
        "/payments/captures",
        {
            "capture_id": event.capture_id,
            "payment_id": payment.payment_id,
            "order_id": payment.order_id,
            "amount_minor": event.amount_minor,
            "currency": payment.currency,
        },
        idempotency_key=f"payment-capture:{event.capture_id}",
    )
    return payment


def refund_payment(event: PaymentRefundedV1, *, payments: PaymentBook, erp: Downstream) -> Payment:
    payment = _authorized(payments.get(event.payment_id), event.payment_id, event.currency, "refund")
    _same_order(payment, event.order_id, f"refund {event.refund_id}")
    if payment.refunded_minor + event.amount_minor > payment.captured_minor:
        raise TransientError(
            f"refund {event.refund_id} of {event.amount_minor} would take payment {payment.payment_id}'s refunds to "
            f"{payment.refunded_minor + event.amount_minor}, over the {payment.captured_minor} captured so far; "
            "waiting for a capture"
        )
    payment.refunded_minor += event.amount_minor
    if payment.refunded_minor == payment.captured_minor:
        payment.status = "refunded"
    payment.operations.append(("refund", event.refund_id, event.amount_minor))
    payments.save(payment)
    erp.post(
        "/payments/refunds",
        {
            "refund_id": event.refund_id,
            "payment_id": payment.payment_id,
            "order_id": payment.order_id,
            "rma_id": event.rma_id,
            "amount_minor": event.amount_minor,
            "currency": payment.currency,
        },
        idempotency_key=f"payment-refund:{event.refund_id}",
    )
    return payment


def fail_payment(event: PaymentFailedV1, *, payments: PaymentBook, orders: OrderBook, notify: Downstream) -> Payment:
    order = orders.get(event.order_id)
    if order is None:
        raise TransientError(f"order {event.order_id} is not known yet: the failure arrived before its order")
    payment = payments.get(event.payment_id) or Payment(
        payment_id=event.payment_id, order_id=event.order_id, currency=order.currency
    )
    payment.status = "failed"
    payments.save(payment)
    notify.post(
        "/notifications",
        {
            "template": "payment_failed",
            "order_id": order.order_id,
            "customer_id": order.customer_id,
            "operation": event.operation,
            "code": event.code,
        },
        idempotency_key=f"notify:payment-failed:{event.payment_id}:{event.operation}",
    )
    return payment


def _authorized(payment: Payment | None, payment_id: str, currency: str, what: str) -> Payment:
    """The payment a capture or refund applies to, once it has been authorized."""
    if payment is None or payment.authorized_minor == 0:
        raise TransientError(f"payment {payment_id} is not authorized yet: the {what} arrived before its authorization")
    if currency != payment.currency:
        raise PermanentError(f"{what} in {currency} for payment {payment_id}, which is in {payment.currency}")
    return payment


def _same_order(payment: Payment, order_id: str, what: str) -> None:
    if payment.order_id != order_id:
        raise PermanentError(
            f"{what} names order {order_id}, but payment {payment.payment_id} is for {payment.order_id}"
        )
