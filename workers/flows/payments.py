"""The payments flow's wiring: authorizations, captures, refunds and failures on the SQL payment book."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import Connection

from contracts.payments import FLOW as NAME
from contracts.payments import PaymentAuthorizedV1, PaymentCapturedV1, PaymentFailedV1, PaymentRefundedV1
from contracts.registry import ParsedEvent
from handlers.downstream import Downstream
from handlers.payments import authorize_payment, capture_payment, fail_payment, refund_payment
from workers.flows.flow import Flow
from workers.store.books.orders import SqlOrderBook
from workers.store.books.payments import SqlPaymentBook


def apply(parsed: ParsedEvent, connection: Connection, downstream: Mapping[str, Downstream]) -> object:
    payments, orders = SqlPaymentBook(connection), SqlOrderBook(connection)
    event = parsed.event
    if isinstance(event, PaymentAuthorizedV1):
        return authorize_payment(event, payments=payments, orders=orders)
    if isinstance(event, PaymentCapturedV1):
        return capture_payment(event, payments=payments, erp=downstream["erp"])
    if isinstance(event, PaymentRefundedV1):
        return refund_payment(event, payments=payments, erp=downstream["erp"])
    if isinstance(event, PaymentFailedV1):
        return fail_payment(event, payments=payments, orders=orders, notify=downstream["notify"])
    raise AssertionError(f"the payments flow has no handler for {parsed.contract.name}")


FLOW = Flow(name=NAME, systems=("erp", "notify"), apply=apply)
