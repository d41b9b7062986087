"""An order's state as every flow that touches it sees it: lines, where each is reserved, what shipped.

The order's status follows from its lines, so no flow sets it by hand:
cancelled (sticky) > delivered > shipped > partially_shipped > reserved / partially_backordered / backordered.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

LineStatus = Literal["reserved", "backordered", "shipped", "cancelled"]
OrderStatus = Literal[
    "reserved", "partially_backordered", "backordered", "partially_shipped", "shipped", "delivered", "cancelled"
]


@dataclass
class Line:
    """One order line: reserved at `location`, or backordered (no location) until stock arrives."""

    line_id: str
    sku: str
    quantity: int
    unit_price_minor: int
    status: LineStatus
    location: str | None = None
    shipped: int = 0
    delivered: int = 0
    #: Units asked back through RMAs (return.requested).
    return_requested: int = 0

    @property
    def unshipped(self) -> int:
        return self.quantity - self.shipped


@dataclass
class Order:
    order_id: str
    channel: str
    customer_id: str | None
    currency: str
    total_minor: int
    tax_exempt: bool
    lines: list[Line]
    status: OrderStatus = "reserved"
    #: Set by the store: the order in which backorders are served (oldest first).
    sequence: int = field(default=0, compare=False)

    def line(self, line_id: str) -> Line | None:
        return next((line for line in self.lines if line.line_id == line_id), None)

    def refresh_status(self) -> OrderStatus:
        """Derive the status from the lines (a cancelled order stays cancelled)."""
        if self.status != "cancelled":
            self.status = derive_status(self.lines)
        return self.status


def derive_status(lines: list[Line]) -> OrderStatus:
    active = [line for line in lines if line.status != "cancelled"]
    if not active:
        return "cancelled"
    if all(line.delivered == line.quantity for line in active):
        return "delivered"
    if all(line.shipped == line.quantity for line in active):
        return "shipped"
    if any(line.shipped for line in active):
        return "partially_shipped"
    reserved = sum(1 for line in active if line.status == "reserved")
    if reserved == len(active):
        return "reserved"
    return "backordered" if reserved == 0 else "partially_backordered"


class OrderBook(Protocol):
    """Where orders are kept; `get` locks the order until the transaction ends."""

    def get(self, order_id: str) -> Order | None: ...

    def add(self, order: Order) -> None: ...

    def save(self, order: Order) -> None:
        """Write the order's status and every line's state."""
        ...

    def backordered(self, sku: str) -> list[Order]:
        """Orders with a backordered line of `sku`, oldest first."""
        ...

    def reserved_at(self, sku: str, location: str) -> list[Order]:
        """Orders with an unshipped line of `sku` reserved at `location`, newest first."""
        ...
