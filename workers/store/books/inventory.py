"""The SQL stock book: stock per SKU and location, shared by every flow that moves stock."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, select, update

from handlers.stock import StockLevel
from workers.store.tables import stock_levels
from workers.store.upsert import insert_ignoring_conflict


class SqlStockBook:
    """Stock levels on the message's transaction; reads lock the rows (SELECT ... FOR UPDATE)."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def level(self, sku: str, location: str) -> StockLevel:
        query = (
            select(stock_levels).where(stock_levels.c.sku == sku, stock_levels.c.location == location).with_for_update()
        )
        row = self._connection.execute(query).mappings().first()
        if row is None:
            # Create the row first, so the lock covers it when two workers meet a new location at once.
            empty = {"sku": sku, "location": location, "on_hand": 0, "reserved": 0, "quarantined": 0}
            insert_ignoring_conflict(self._connection, stock_levels, {**empty, "return_pending": 0}, stock_levels.c.sku)
            row = self._connection.execute(query).mappings().one()
        return _level(row)

    def levels(self, sku: str) -> list[StockLevel]:
        query = (
            select(stock_levels).where(stock_levels.c.sku == sku).order_by(stock_levels.c.location).with_for_update()
        )
        return [_level(row) for row in self._connection.execute(query).mappings()]

    def lock(self, skus: Iterable[str]) -> None:
        wanted = sorted(set(skus))
        if wanted:
            query = (
                select(stock_levels.c.sku)
                .where(stock_levels.c.sku.in_(wanted))
                .order_by(stock_levels.c.sku, stock_levels.c.location)
                .with_for_update()
            )
            self._connection.execute(query).all()

    def save(self, level: StockLevel) -> None:
        self._connection.execute(
            update(stock_levels)
            .where(stock_levels.c.sku == level.sku, stock_levels.c.location == level.location)
            .values(
                on_hand=level.on_hand,
                reserved=level.reserved,
                quarantined=level.quarantined,
                return_pending=level.return_pending,
                last_sequence=level.last_sequence,
            )
        )

    def receive(self, sku: str, location: str, quantity: int) -> None:
        """Add stock on hand outside any event (seeding the demo and tests)."""
        level = self.level(sku, location)
        level.on_hand += quantity
        self.save(level)


def _level(row: Any) -> StockLevel:
    return StockLevel(
        sku=row["sku"],
        location=row["location"],
        on_hand=row["on_hand"],
        reserved=row["reserved"],
        quarantined=row["quarantined"],
        return_pending=row["return_pending"],
        last_sequence=row["last_sequence"],
    )
