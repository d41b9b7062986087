"""The SQL stock book: stock per SKU and location, shared by every flow that moves stock."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, bindparam, select, update

from handlers.stock import StockLevel
from workers.store.tables import stock_levels
from workers.store.upsert import insert_ignoring_conflict

_IN_LOCATION_ORDER = (stock_levels.c.sku, stock_levels.c.location)
#: The statements, built once (bound parameters only): building a construct per call cost more than its SQL.
_PEEK = (
    select(stock_levels).where(stock_levels.c.sku.in_(bindparam("skus", expanding=True))).order_by(*_IN_LOCATION_ORDER)
)
_LOCK = _PEEK.with_for_update()
_LEVEL = (
    select(stock_levels)
    .where(stock_levels.c.sku == bindparam("sku"), stock_levels.c.location == bindparam("location"))
    .with_for_update()
)
_LEVELS = (
    select(stock_levels)
    .where(stock_levels.c.sku == bindparam("sku"))
    .order_by(stock_levels.c.location)
    .with_for_update()
)
#: One UPDATE for any number of levels: executemany, which psycopg sends as one pipeline (one round trip).
_SAVE = update(stock_levels).where(
    stock_levels.c.sku == bindparam("key_sku"), stock_levels.c.location == bindparam("key_location")
)


class SqlStockBook:
    """Stock levels on the message's transaction; reads lock the rows (SELECT ... FOR UPDATE), `peek` does not.

    The rows `lock` took are kept as read, and changed by `save`, so the reads after it cost no round
    trip while the row is held: one book serves one transaction (a rolled-back savepoint needs a new one).
    """

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self._held: dict[str, dict[str, StockLevel]] = {}

    def peek(self, skus: Iterable[str]) -> dict[str, list[StockLevel]]:
        wanted = list(dict.fromkeys(skus))
        found: dict[str, list[StockLevel]] = {sku: [] for sku in wanted}
        unheld = [sku for sku in wanted if sku not in self._held]
        if unheld:
            for row in self._connection.execute(_PEEK, {"skus": unheld}).mappings():
                found[row["sku"]].append(_level(row))
        for sku in wanted:
            if sku in self._held:  # locked by this transaction: what it holds is what is committed, and newer
                found[sku] = self.levels(sku)
        return found

    def level(self, sku: str, location: str) -> StockLevel:
        held = self._held.get(sku, {}).get(location)
        if held is not None:
            return copy.copy(held)
        key = {"sku": sku, "location": location}
        row = self._connection.execute(_LEVEL, key).mappings().first()
        if row is None:
            # Create the row first, so the lock covers it when two workers meet a new location at once.
            empty = {"sku": sku, "location": location, "on_hand": 0, "reserved": 0, "quarantined": 0}
            insert_ignoring_conflict(self._connection, stock_levels, {**empty, "return_pending": 0}, stock_levels.c.sku)
            row = self._connection.execute(_LEVEL, key).mappings().one()
        level = _level(row)
        if sku in self._held:
            self._held[sku][location] = copy.copy(level)
        return level

    def levels(self, sku: str) -> list[StockLevel]:
        if sku in self._held:
            return [copy.copy(level) for _, level in sorted(self._held[sku].items())]
        return [_level(row) for row in self._connection.execute(_LEVELS, {"sku": sku}).mappings()]

    def lock(self, skus: Iterable[str]) -> None:
        wanted = sorted(set(skus))
        if wanted:
            held: dict[str, dict[str, StockLevel]] = {sku: {} for sku in wanted}
            for row in self._connection.execute(_LOCK, {"skus": wanted}).mappings():
                held[row["sku"]][row["location"]] = _level(row)
            self._held |= held

    def save(self, level: StockLevel) -> None:
        self.save_all([level])

    def save_all(self, levels: Iterable[StockLevel]) -> None:
        rows = []
        for level in levels:
            if level.sku in self._held:
                self._held[level.sku][level.location] = copy.copy(level)
            rows.append(_row(level))
        if rows:
            self._connection.execute(_SAVE, rows)

    def receive(self, sku: str, location: str, quantity: int) -> None:
        """Add stock on hand outside any event (seeding the demo and tests)."""
        level = self.level(sku, location)
        level.on_hand += quantity
        self.save(level)


def _row(level: StockLevel) -> dict[str, Any]:
    return {
        "key_sku": level.sku,
        "key_location": level.location,
        "on_hand": level.on_hand,
        "reserved": level.reserved,
        "quarantined": level.quarantined,
        "return_pending": level.return_pending,
        "last_sequence": level.last_sequence,
    }


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
