"""The SQL stock ledger: stock per SKU and location, shared by every flow that moves stock."""

from __future__ import annotations

from sqlalchemy import Connection, select, update

from workers.store.tables import stock_levels


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
