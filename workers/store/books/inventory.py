"""The SQL stock book: stock per SKU and location, shared by every flow that moves stock."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, select, update

from handlers.stock import StockLevel
from workers.store.tables import stock_levels
from workers.store.upsert import insert_ignoring_conflict


class SqlStockBook:
    """Stock levels on the message's transaction; reads lock the rows (SELECT ... FOR UPDATE), `peek` does not.

    The rows `lock` took are kept as read, and changed by `save`, so the reads after it cost no round
    trip while the row is held: one book serves one transaction (a rolled-back savepoint needs a new one).
    """

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self._held: dict[str, dict[str, StockLevel]] = {}

    def peek(self, sku: str) -> list[StockLevel]:
        query = select(stock_levels).where(stock_levels.c.sku == sku).order_by(stock_levels.c.location)
        return [_level(row) for row in self._connection.execute(query).mappings()]

    def level(self, sku: str, location: str) -> StockLevel:
        held = self._held.get(sku, {}).get(location)
        if held is not None:
            return copy.copy(held)
        query = (
            select(stock_levels).where(stock_levels.c.sku == sku, stock_levels.c.location == location).with_for_update()
        )
        row = self._connection.execute(query).mappings().first()
        if row is None:
            # Create the row first, so the lock covers it when two workers meet a new location at once.
            empty = {"sku": sku, "location": location, "on_hand": 0, "reserved": 0, "quarantined": 0}
            insert_ignoring_conflict(self._connection, stock_levels, {**empty, "return_pending": 0}, stock_levels.c.sku)
            row = self._connection.execute(query).mappings().one()
        level = _level(row)
        if sku in self._held:
            self._held[sku][location] = copy.copy(level)
        return level

    def levels(self, sku: str) -> list[StockLevel]:
        if sku in self._held:
            return [copy.copy(level) for _, level in sorted(self._held[sku].items())]
        query = (
            select(stock_levels).where(stock_levels.c.sku == sku).order_by(stock_levels.c.location).with_for_update()
        )
        return [_level(row) for row in self._connection.execute(query).mappings()]

    def lock(self, skus: Iterable[str]) -> None:
        wanted = sorted(set(skus))
        if wanted:
            query = (
                select(stock_levels)
                .where(stock_levels.c.sku.in_(wanted))
                .order_by(stock_levels.c.sku, stock_levels.c.location)
                .with_for_update()
            )
            held: dict[str, dict[str, StockLevel]] = {sku: {} for sku in wanted}
            for row in self._connection.execute(query).mappings():
                held[row["sku"]][row["location"]] = _level(row)
            self._held |= held

    def save(self, level: StockLevel) -> None:
        if level.sku in self._held:
            self._held[level.sku][level.location] = copy.copy(level)
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
