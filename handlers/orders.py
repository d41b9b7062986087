"""Placing an order: store it, reserve stock per line or backorder it, export it to the ERP.

Rules:
- A line is reserved at one location that has the whole quantity available (available = on hand
  - reserved - quarantined); the first such location in location order wins. A line no location
  can cover is backordered in full; it is allocated later, when stock arrives.
- The order's status is `reserved` (every line reserved), `backordered` (none) or
  `partially_backordered`.
- Every order is exported to the ERP, backordered lines included, with an idempotency key derived
  from the order id, so retries and redeliveries never create a second ERP order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from contracts.orders import OrderCreatedV2
from handlers.downstream import Downstream

LineStatus = Literal["reserved", "backordered"]
OrderStatus = Literal["reserved", "partially_backordered", "backordered"]


@dataclass(frozen=True)
class LineAllocation:
    line_id: str
    sku: str
    quantity: int
    status: LineStatus
    location: str | None


@dataclass(frozen=True)
class OrderPlaced:
    """The outcome of placing an order (past tense: it happened)."""

    order_id: str
    status: OrderStatus
    lines: tuple[LineAllocation, ...]


class OrderBook(Protocol):
    """Where orders are kept."""

    def add(self, order: OrderCreatedV2, placed: OrderPlaced) -> None: ...


class StockLedger(Protocol):
    """Stock per SKU and location."""

    def reserve(self, sku: str, quantity: int) -> str | None:
        """Reserve `quantity` at one location that has it all available; return it, or None."""
        ...


def place_order(order: OrderCreatedV2, *, orders: OrderBook, stock: StockLedger, erp: Downstream) -> OrderPlaced:
    """Reserve each line (or backorder it), keep the order, and export it to the ERP."""
    allocations = tuple(_allocate(line.line_id, line.sku, line.quantity, stock) for line in order.lines)
    placed = OrderPlaced(order_id=order.order_id, status=_order_status(allocations), lines=allocations)
    orders.add(order, placed)
    erp.post("/orders", _erp_order(order, placed), idempotency_key=f"order-export:{order.order_id}")
    return placed


def _allocate(line_id: str, sku: str, quantity: int, stock: StockLedger) -> LineAllocation:
    location = stock.reserve(sku, quantity)
    status: LineStatus = "backordered" if location is None else "reserved"
    return LineAllocation(line_id=line_id, sku=sku, quantity=quantity, status=status, location=location)


def _order_status(allocations: tuple[LineAllocation, ...]) -> OrderStatus:
    reserved = sum(1 for line in allocations if line.status == "reserved")
    if reserved == len(allocations):
        return "reserved"
    return "backordered" if reserved == 0 else "partially_backordered"


def _erp_order(order: OrderCreatedV2, placed: OrderPlaced) -> dict[str, object]:
    by_line = {line.line_id: line for line in placed.lines}
    return {
        "order_id": order.order_id,
        "channel": order.channel,
        "customer_id": order.customer.customer_id,
        "currency": order.currency,
        "total_minor": order.total_minor,
        "tax_exempt": order.tax_exempt,
        "status": placed.status,
        "lines": [
            {
                "line_id": line.line_id,
                "sku": line.sku,
                "quantity": line.quantity,
                "unit_price_minor": line.unit_price_minor,
                "status": by_line[line.line_id].status,
                "location": by_line[line.line_id].location,
            }
            for line in order.lines
        ],
    }
