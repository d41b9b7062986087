"""Matching stock to order lines after stock moved: serve backorders, or take reservations back.

Shared by every flow that changes what is available at a location (inventory, cancels, returns),
so a backordered line is served by whichever event frees the stock first.
"""

from __future__ import annotations

from handlers.order_book import OrderBook
from handlers.stock import StockLevel


def serve_backorders(level: StockLevel, orders: OrderBook) -> list[tuple[str, str]]:
    """Reserve backordered lines of this SKU here, oldest order first, each line whole, while stock lasts.

    A line too large for what is left waits; younger, smaller lines may go ahead of it.
    """
    served: list[tuple[str, str]] = []
    for order in orders.backordered(level.sku):
        if level.available <= 0:
            break
        if order.status == "cancelled":
            continue
        changed = False
        for line in order.lines:
            if line.sku == level.sku and line.status == "backordered" and line.unshipped <= level.available:
                line.status, line.location = "reserved", level.location
                level.reserved += line.unshipped
                served.append((order.order_id, line.line_id))
                changed = True
        if changed:
            order.refresh_status()
            orders.save(order)
    return served


def take_back_reservations(level: StockLevel, excess: int, orders: OrderBook) -> list[tuple[str, str]]:
    """Return the newest unshipped reservations at this location to backorder until `excess` units are freed."""
    taken: list[tuple[str, str]] = []
    for order in orders.reserved_at(level.sku, level.location):
        for line in order.lines:
            if excess <= 0:
                break
            if line.sku == level.sku and line.location == level.location and line.status == "reserved":
                freed = line.unshipped
                line.status, line.location = "backordered", None
                level.reserved -= freed
                excess -= freed
                taken.append((order.order_id, line.line_id))
        order.refresh_status()
        orders.save(order)
        if excess <= 0:
            break
    return taken
