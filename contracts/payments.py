"""The payments flow's contracts: authorization, (partial) capture, refund and failure of a payment."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from contracts.base import ContractModel
from contracts.registry import Contract
from contracts.types import Currency, Id, PositiveMinorUnits

FLOW = "payments"


class PaymentAuthorizedV1(ContractModel):
    """The gateway reserved `amount_minor` on the buyer's means of payment for an order; nothing is charged yet."""

    payment_id: Id
    order_id: Id
    amount_minor: PositiveMinorUnits
    currency: Currency
    method: Literal["card", "paypal", "invoice", "marketplace"] = "card"


class PaymentCapturedV1(ContractModel):
    """Money was charged against an authorization; an order may be captured in several parts.

    The captures of a payment never add up to more than was authorized.
    """

    capture_id: Id
    payment_id: Id
    order_id: Id
    amount_minor: PositiveMinorUnits
    currency: Currency


class PaymentRefundedV1(ContractModel):
    """Money went back to the buyer; the refunds of a payment never add up to more than was captured."""

    refund_id: Id
    payment_id: Id
    order_id: Id
    amount_minor: PositiveMinorUnits
    currency: Currency
    rma_id: Id | None = None


class PaymentFailedV1(ContractModel):
    """The gateway declined an authorization or a capture; the payment takes no further captures."""

    payment_id: Id
    order_id: Id
    operation: Literal["authorization", "capture"]
    code: Annotated[str, Field(strict=True, pattern=r"^[a-z0-9_]{1,64}$")]


def _payment_keys(
    event: PaymentAuthorizedV1 | PaymentCapturedV1 | PaymentRefundedV1 | PaymentFailedV1,
) -> dict[str, str]:
    return {"payment_id": event.payment_id, "order_id": event.order_id}


#: A capture, refund or failure needs its order and its authorization applied first.
ON_THE_AUTHORIZATION = {"order.created": "order_id", "payment.authorized": "payment_id"}

PAYMENT_AUTHORIZED = Contract(
    name="payment.authorized",
    depends_on={"order.created": "order_id"},
    flow=FLOW,
    versions={1: PaymentAuthorizedV1},
    upcasters={},
    dedup_key=lambda event: event.payment_id,
    business_keys=_payment_keys,
    summary="A payment was authorized for an order. Dedup key: payment_id.",
    examples={
        1: {"payment_id": "PAY-1", "order_id": "ORD-1001", "amount_minor": 3998, "currency": "EUR", "method": "card"}
    },
)

PAYMENT_CAPTURED = Contract(
    name="payment.captured",
    depends_on=ON_THE_AUTHORIZATION,
    flow=FLOW,
    versions={1: PaymentCapturedV1},
    upcasters={},
    dedup_key=lambda event: event.capture_id,
    business_keys=_payment_keys,
    summary="Part or all of an authorized payment was captured. Dedup key: capture_id.",
    examples={
        1: {
            "capture_id": "CAP-1",
            "payment_id": "PAY-1",
            "order_id": "ORD-1001",
            "amount_minor": 1999,
            "currency": "EUR",
        }
    },
)

PAYMENT_REFUNDED = Contract(
    name="payment.refunded",
    depends_on=ON_THE_AUTHORIZATION,
    flow=FLOW,
    versions={1: PaymentRefundedV1},
    upcasters={},
    dedup_key=lambda event: event.refund_id,
    business_keys=_payment_keys,
    summary="Captured money was refunded. Dedup key: refund_id.",
    examples={
        1: {
            "refund_id": "REF-1",
            "payment_id": "PAY-1",
            "order_id": "ORD-1001",
            "amount_minor": 1999,
            "currency": "EUR",
        }
    },
)

PAYMENT_FAILED = Contract(
    name="payment.failed",
    depends_on=ON_THE_AUTHORIZATION,
    flow=FLOW,
    versions={1: PaymentFailedV1},
    upcasters={},
    dedup_key=lambda event: f"{event.payment_id}:{event.operation}",
    business_keys=_payment_keys,
    summary="An authorization or capture was declined. Dedup key: payment_id:operation.",
    examples={1: {"payment_id": "PAY-2", "order_id": "ORD-1002", "operation": "capture", "code": "insufficient_funds"}},
)

CONTRACTS = (PAYMENT_AUTHORIZED, PAYMENT_CAPTURED, PAYMENT_REFUNDED, PAYMENT_FAILED)
