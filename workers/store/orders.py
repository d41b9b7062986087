"""SQL implementations of the orders flow's ports: the order book and the stock ledger."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Connection, select, update

from contracts.orders import OrderCreatedV2
from handlers.orders import OrderPlaced
from workers.store.tables import order_lines, orders, stock_levels


class SqlOrderBook:
    """Orders and their lines, written on the message's transaction."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def add(self, order: OrderCreatedV2, placed: OrderPlaced) -> None:
        self._connection.execute(
            orders.insert().values(
                order_id=order.order_id,
                channel=order.channel,
                customer_id=order.customer.customer_id,
                currency=order.currency,
                total_minor=order.total_minor,
                tax_exempt=int(order.tax_exempt),
                status=placed.status,
                placed_at=datetime.now(UTC),
            )
        )
        allocation = {line.line_id: line for line in placed.lines}
        self._connection.execute(
            order_lines.insert(),
            [
                {
                    "order_id": order.order_id,
                    "line_id": line.line_id,
                    "sku": line.sku,
                    "quantity": line.quantity,
                    "unit_price_minor": line.unit_price_minor,
                    "status": allocation[line.line_id].status,
                    "location": allocation[line.line_id].location,
                }
                for line in order.lines
            ],
        )


class SqlStockLedger:
    """Stock levels per SKU and location; reservations lock the row they change."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def reserve(self, sku: str, quantity: int) -> str | None:
        available = stock_levels.c.on_hand - stock_levels.c.reserved - stock_levels.c.quarantined
        candidate = (
            select(stock_levels.c.location)
            .where(stock_levels.c.sku == sku, available >= quantity)
            .order_by(stock_levels.c.location)
            .limit(1)
            .with_for_update()
        )
        location = self._connection.execute(candidate).scalar_one_or_none()
        if location is None:
            return None
        self._connection.execute(
            update(stock_levels)
            .where(stock_levels.c.sku == sku, stock_levels.c.location == location)
            .values(reserved=stock_levels.c.reserved + quantity)
        )
        return str(location)

    def receive(self, sku: str, location: str, quantity: int) -> None:
        """Add stock on hand (used to seed the demo and tests until the inventory flow exists)."""
        changed = self._connection.execute(
            update(stock_levels)
            .where(stock_levels.c.sku == sku, stock_levels.c.location == location)
            .values(on_hand=stock_levels.c.on_hand + quantity)
        )
        if changed.rowcount == 0:
            self._connection.execute(
                stock_levels.insert().values(sku=sku, location=location, on_hand=quantity, reserved=0, quarantined=0)
            )
