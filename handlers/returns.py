"""Returns: an RMA against delivered lines, then a receipt whose condition decides disposition and refund.

Rules:
- A return is requested for delivered units only: across every RMA of a line, never more than
  was delivered. Units not delivered yet are retried for a while (the dispatch or delivery event
  may be late); more than was ordered is a business rejection.
- Requested units count as return-pending at the RMA's location until they arrive.
- On receipt, each unit leaves return-pending and joins stock on hand there: sellable units
  become available (serving backordered lines there, oldest first, and pushing the new
  available-to-promise to the channels), damaged ones are quarantined. No more than was
  requested can be received.
- A receipt for an RMA not seen yet is retried for a bounded time.
- Every receipt requests a refund from the payments system: the received units at their order
  price, less the receipt's adjustment (restocking fee, damage deduction), never below zero;
  an adjustment larger than the refund is a business rejection.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

from contracts.returns import ReceivedLine, ReturnReceivedV1, ReturnRequestedV1
from handlers.allocation import serve_backorders
from handlers.availability import announce_availability
from handlers.downstream import Downstream
from handlers.errors import PermanentError, TransientError
from handlers.order_book import OrderBook
from handlers.stock import StockBook


@dataclass
class ReturnLine:
    line_id: str
    sku: str
    requested: int
    received: int = 0
    sellable: int = 0
    damaged: int = 0


@dataclass
class Return:
    rma_id: str
    order_id: str
    location: str
    lines: list[ReturnLine]
    status: Literal["requested", "partially_received", "received"] = "requested"
    refunded_minor: int = 0
    #: Receipts applied to this RMA, in order.
    receipts: list[str] = field(default_factory=list)

    def line(self, line_id: str) -> ReturnLine | None:
        return next((line for line in self.lines if line.line_id == line_id), None)


class ReturnBook(Protocol):
    """Where RMAs are kept; `get` locks the RMA until the transaction ends."""

    def get(self, rma_id: str) -> Return | None: ...

    def add(self, rma: Return) -> None: ...

    def save(self, rma: Return) -> None: ...


def request_return(event: ReturnRequestedV1, *, orders: OrderBook, stock: StockBook, returns: ReturnBook) -> Return:
    order = orders.get(event.order_id)
    if order is None:
        raise TransientError(f"order {event.order_id} is not known yet: the return arrived before its order")
    lines = []
    for requested in event.lines:
        line = order.line(requested.line_id)
        if line is None:
            raise PermanentError(f"order {order.order_id} has no line {requested.line_id}")
        wanted = line.return_requested + requested.quantity
        if wanted > line.quantity:
            raise PermanentError(
                f"line {line.line_id} of order {order.order_id}: {wanted} units asked back in all, "
                f"but only {line.quantity} ordered"
            )
        if wanted > line.delivered:
            raise TransientError(
                f"line {line.line_id} of order {order.order_id}: {wanted} units asked back, "
                f"{line.delivered} delivered so far: waiting for the delivery"
            )
        lines.append(ReturnLine(line_id=line.line_id, sku=line.sku, requested=requested.quantity))
    for return_line in lines:
        order_line = order.line(return_line.line_id)
        assert order_line is not None
        order_line.return_requested += return_line.requested
        level = stock.level(return_line.sku, event.location)
        level.return_pending += return_line.requested
        stock.save(level)
    orders.save(order)
    rma = Return(rma_id=event.rma_id, order_id=order.order_id, location=event.location, lines=lines)
    returns.add(rma)
    return rma


def receive_return(
    event: ReturnReceivedV1,
    *,
    orders: OrderBook,
    stock: StockBook,
    returns: ReturnBook,
    payments: Downstream,
    channels: Downstream,
) -> Return:
    rma = returns.get(event.rma_id)
    if rma is None:
        raise TransientError(f"RMA {event.rma_id} is not known yet: the receipt arrived before the request")
    if rma.order_id != event.order_id:
        raise PermanentError(f"RMA {rma.rma_id} belongs to order {rma.order_id}, not {event.order_id}")
    order = orders.get(rma.order_id)
    assert order is not None, "an RMA is only stored for a known order"
    gross = 0
    for received in event.lines:
        line = rma.line(received.line_id)
        if line is None:
            raise PermanentError(f"RMA {rma.rma_id} does not cover line {received.line_id}")
        if line.received + received.quantity > line.requested:
            raise PermanentError(
                f"RMA {rma.rma_id} line {line.line_id}: receiving {received.quantity} more "
                f"than the {line.requested - line.received} still expected"
            )
        order_line = order.line(line.line_id)
        assert order_line is not None
        gross += order_line.unit_price_minor * received.quantity
    if event.adjustment_minor > gross:
        raise PermanentError(
            f"receipt {event.receipt_id}: adjustment {event.adjustment_minor} exceeds the {gross} being refunded"
        )
    for received in event.lines:
        line = rma.line(received.line_id)
        assert line is not None
        line.received += received.quantity
        level = stock.level(line.sku, rma.location)
        level.return_pending -= min(received.quantity, level.return_pending)
        level.on_hand += received.quantity
        if received.condition == "damaged":
            line.damaged += received.quantity
            level.quarantined += received.quantity
        else:
            line.sellable += received.quantity
            serve_backorders(level, orders)
        level.check()
        stock.save(level)
    refund = gross - event.adjustment_minor
    rma.refunded_minor += refund
    rma.receipts.append(event.receipt_id)
    rma.status = "received" if all(line.received == line.requested for line in rma.lines) else "partially_received"
    returns.save(rma)
    payments.post(
        "/refunds",
        {
            "rma_id": rma.rma_id,
            "receipt_id": event.receipt_id,
            "order_id": order.order_id,
            "amount_minor": refund,
            "currency": order.currency,
            "adjustment_minor": event.adjustment_minor,
        },
        idempotency_key=f"return-refund:{event.receipt_id}",
    )
    sellable = [rma_line.sku for rma_line, received in _received_lines(rma, event) if received.condition == "sellable"]
    announce_availability(channels, stock, sellable, cause=f"return.received:{event.receipt_id}")
    return rma


def _received_lines(rma: Return, event: ReturnReceivedV1) -> list[tuple[ReturnLine, ReceivedLine]]:
    pairs = []
    for received in event.lines:
        line = rma.line(received.line_id)
        assert line is not None, "checked before anything changed"
        pairs.append((line, received))
    return pairs
