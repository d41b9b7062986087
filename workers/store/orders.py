"""The SQL order book: orders and their lines, written on the message's transaction."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Connection

from contracts.orders import OrderCreatedV2
from handlers.orders import OrderPlaced
from workers.store.tables import order_lines, orders


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
