"""Shipments: partial and split dispatches take stock off the shelf; deliveries complete the order.

Rules:
- A shipment carries some quantity of some lines from one location. Each line ships from the
  location it is reserved at, never more than is left unshipped; stock on hand and reserved there
  both go down by the shipped quantity.
- A line that is still backordered is retried for a while (stock may be arriving), then
  dead-lettered; a line of a cancelled order, an unknown line, a wrong location or too large a
  quantity is a business rejection.
- Events arrive out of order: a dispatch for an order not seen yet, or a delivery for a
  shipment not dispatched yet, is retried for a bounded time.
- The order's status follows: partially shipped, shipped, delivered (every line delivered).
- The customer is notified of each dispatch and each delivery, keyed by the shipment id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

from contracts.fulfillment import ShipmentDeliveredV1, ShipmentDispatchedV1
from handlers.downstream import Downstream
from handlers.errors import PermanentError, TransientError
from handlers.order_book import Line, Order, OrderBook
from handlers.stock import StockBook


@dataclass
class Shipment:
    shipment_id: str
    order_id: str
    location: str
    carrier: str
    tracking_number: str | None
    #: (line_id, quantity) per shipped line.
    lines: list[tuple[str, int]] = field(default_factory=list)
    status: Literal["dispatched", "delivered"] = "dispatched"
    delivered_at: datetime | None = None


class ShipmentBook(Protocol):
    """Where shipments are kept; `get` locks the shipment until the transaction ends."""

    def get(self, shipment_id: str) -> Shipment | None: ...

    def add(self, shipment: Shipment) -> None: ...

    def save(self, shipment: Shipment) -> None: ...


def dispatch_shipment(
    event: ShipmentDispatchedV1, *, orders: OrderBook, stock: StockBook, shipments: ShipmentBook, notify: Downstream
) -> Order:
    order = orders.get(event.order_id)
    if order is None:
        raise TransientError(f"order {event.order_id} is not known yet: the dispatch arrived before its order")
    if order.status == "cancelled":
        raise PermanentError(f"order {order.order_id} is cancelled; shipment {event.shipment_id} cannot ship it")
    lines = [_shippable_line(order, shipped.line_id, shipped.quantity, event) for shipped in event.lines]
    for line, shipped in zip(lines, event.lines, strict=True):
        level = stock.level(line.sku, event.location)
        level.on_hand -= shipped.quantity
        level.reserved -= shipped.quantity
        level.check()
        stock.save(level)
        line.shipped += shipped.quantity
        if line.unshipped == 0:
            line.status = "shipped"
    order.refresh_status()
    orders.save(order)
    shipments.add(
        Shipment(
            shipment_id=event.shipment_id,
            order_id=order.order_id,
            location=event.location,
            carrier=event.carrier,
            tracking_number=event.tracking_number,
            lines=[(line.line_id, line.quantity) for line in event.lines],
        )
    )
    notify.post(
        "/notifications",
        {
            "template": "shipment_dispatched",
            "order_id": order.order_id,
            "customer_id": order.customer_id,
            "shipment_id": event.shipment_id,
            "carrier": event.carrier,
            "tracking_number": event.tracking_number,
            "order_status": order.status,
        },
        idempotency_key=f"notify:shipment-dispatched:{event.shipment_id}",
    )
    return order


def _shippable_line(order: Order, line_id: str, quantity: int, event: ShipmentDispatchedV1) -> Line:
    """The order line a shipment names, once every rule for shipping it holds (checked before anything changes)."""
    line = order.line(line_id)
    if line is None:
        raise PermanentError(f"order {order.order_id} has no line {line_id}")
    if quantity > line.unshipped:
        raise PermanentError(
            f"line {line_id} of order {order.order_id}: shipping {quantity} "
            f"but only {line.unshipped} of {line.quantity} are unshipped"
        )
    if line.status == "backordered":
        raise TransientError(f"line {line_id} of order {order.order_id} is backordered: no stock allocated yet")
    if line.location != event.location:
        raise PermanentError(
            f"line {line_id} of order {order.order_id} is reserved at {line.location}, "
            f"but shipment {event.shipment_id} left {event.location}"
        )
    return line


def deliver_shipment(
    event: ShipmentDeliveredV1, *, orders: OrderBook, shipments: ShipmentBook, notify: Downstream
) -> Order:
    shipment = shipments.get(event.shipment_id)
    if shipment is None:
        raise TransientError(f"shipment {event.shipment_id} is not known yet: the delivery arrived before its dispatch")
    if shipment.order_id != event.order_id:
        raise PermanentError(
            f"shipment {shipment.shipment_id} belongs to order {shipment.order_id}, not {event.order_id}"
        )
    if shipment.status == "delivered":
        order = orders.get(shipment.order_id)
        assert order is not None, "a shipment is only stored for a known order"
        return order
    order = orders.get(shipment.order_id)
    assert order is not None, "a shipment is only stored for a known order"
    for line_id, quantity in shipment.lines:
        line = order.line(line_id)
        assert line is not None, "a shipment only names lines of its order"
        line.delivered += quantity
    order.refresh_status()
    orders.save(order)
    shipment.status, shipment.delivered_at = "delivered", event.delivered_at
    shipments.save(shipment)
    notify.post(
        "/notifications",
        {
            "template": "shipment_delivered",
            "order_id": order.order_id,
            "customer_id": order.customer_id,
            "shipment_id": shipment.shipment_id,
            "order_status": order.status,
        },
        idempotency_key=f"notify:shipment-delivered:{shipment.shipment_id}",
    )
    return order
