"""Placing and cancelling orders: reserve stock per line or backorder it, release it, tell the ERP.

Rules:
- A line is reserved at one location that has the whole quantity available; the first such
  location in location order wins, so the lines of one order may be reserved at different
  locations (a split order). A line no location can cover is backordered in full; the inventory
  flow allocates it when stock arrives.
- Every order is exported to the ERP, backordered lines included, with an idempotency key derived
  from the order id, so retries and redeliveries never create a second ERP order.
- A cancel locks its SKUs' stock at once (sorted, so two orders never wait for each other's rows) and
  releases every unshipped reservation, which serves backordered lines of other orders
  (oldest first), and is sent to the ERP. An order with a shipped
  line cannot be cancelled (that is a return): a business rejection. A cancel for an order not
  seen yet is retried for a while, since it may have overtaken its `order.created`.
- Reservations and releases change what the channels may sell: the new available-to-promise is pushed,
  computed under the lock after the reservation.
- Placing locks the stock last (one SKU's orders queue for its rows only for the reservation and the
  commit) and never on a stale plan: a plan the locked rows no longer bear out is placed again locked first.
"""

from __future__ import annotations

from contracts.orders import OrderCancelledV1, OrderCreatedV2
from handlers.allocation import serve_backorders
from handlers.availability import announce_availability
from handlers.downstream import Downstream, segment
from handlers.errors import PermanentError, TransientError
from handlers.order_book import Line, Order, OrderBook
from handlers.stock import AllocationChanged, StockBook, plan_reservations, release_all, reserve_all


def place_order(
    event: OrderCreatedV2,
    *,
    orders: OrderBook,
    stock: StockBook,
    erp: Downstream,
    channels: Downstream,
    lock_first: bool = False,
) -> Order:
    """Reserve each line (or backorder it), keep the order, export it to the ERP, push availability.

    The stock rows are locked last, so a hot SKU's row is held only for the reservation, the
    availability and the commit: the lines are planned from an unlocked read, the order and its ERP
    export written, then the plan is checked under the lock. If the stock moved so that a line would
    go elsewhere, `AllocationChanged` is raised and the caller places the order again (in a fresh
    savepoint) with `lock_first`, which plans under the lock and cannot be overtaken.
    """
    skus = [line.sku for line in event.lines]
    if lock_first:
        stock.lock(skus)
    planned = plan_reservations(stock, [(line.sku, line.quantity) for line in event.lines])
    lines = [
        Line(
            line_id=line.line_id,
            sku=line.sku,
            quantity=line.quantity,
            unit_price_minor=line.unit_price_minor,
            status="backordered" if location is None else "reserved",
            location=location,
        )
        for line, location in zip(event.lines, planned, strict=True)
    ]
    order = Order(
        order_id=event.order_id,
        channel=event.channel,
        customer_id=event.customer.customer_id,
        currency=event.currency,
        total_minor=event.total_minor,
        tax_exempt=event.tax_exempt,
        lines=lines,
    )
    order.refresh_status()
    orders.add(order)
    erp.post("/orders", _erp_order(order), idempotency_key=f"order-export:{order.order_id}")
    stock.lock(skus)
    reserved_at = reserve_all(stock, [(line.sku, line.quantity) for line in lines])
    for line, location in zip(lines, reserved_at, strict=True):
        if location != line.location:
            raise AllocationChanged(f"order {order.order_id}: stock of {line.sku} changed while it was planned")
    reserved = [line.sku for line in lines if line.status == "reserved"]
    announce_availability(channels, stock, reserved, cause=f"order.created:{order.order_id}")
    return order


def cancel_order(
    event: OrderCancelledV1, *, orders: OrderBook, stock: StockBook, erp: Downstream, channels: Downstream
) -> Order:
    """Release the order's reservations, mark it cancelled, and tell the ERP."""
    order = orders.get(event.order_id)
    if order is None:
        raise TransientError(f"order {event.order_id} is not known yet: the cancel may have overtaken the order")
    if order.status == "cancelled":
        return order
    shipped = [line.line_id for line in order.lines if line.shipped]
    if shipped:
        raise PermanentError(
            f"order {order.order_id} cannot be cancelled: lines {', '.join(shipped)} have shipped (use a return)"
        )
    reservations = [
        (line.sku, line.location, line.quantity)
        for line in order.lines
        if line.status == "reserved" and line.location is not None
    ]
    released = [(sku, location) for sku, location, _quantity in reservations]
    stock.lock(sku for sku, _location in released)
    release_all(stock, reservations)
    for line in order.lines:
        line.status, line.location = "cancelled", None
    order.status = "cancelled"
    orders.save(order)
    for sku, location in released:
        level = stock.level(sku, location)
        if serve_backorders(level, orders):
            stock.save(level)
    erp.post(
        f"/orders/{segment(order.order_id)}/cancellation",
        {"order_id": order.order_id, "reason": event.reason},
        idempotency_key=f"order-cancel:{order.order_id}",
    )
    announce_availability(channels, stock, [sku for sku, _ in released], cause=f"order.cancelled:{order.order_id}")
    return order


def _erp_order(order: Order) -> dict[str, object]:
    return {
        "order_id": order.order_id,
        "channel": order.channel,
        "customer_id": order.customer_id,
        "currency": order.currency,
        "total_minor": order.total_minor,
        "tax_exempt": order.tax_exempt,
        "status": order.status,
        "lines": [
            {
                "line_id": line.line_id,
                "sku": line.sku,
                "quantity": line.quantity,
                "unit_price_minor": line.unit_price_minor,
                "status": line.status,
                "location": line.location,
            }
            for line in order.lines
        ],
    }
