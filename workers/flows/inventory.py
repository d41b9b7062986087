"""The inventory flow's wiring: `inventory.adjusted` and `inventory.counted` on the SQL stock and order books."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import Connection

from contracts.inventory import FLOW as NAME
from contracts.inventory import InventoryAdjustedV1, InventoryCountedV1
from contracts.registry import ParsedEvent
from handlers.downstream import Downstream
from handlers.inventory import adjust_stock, count_stock
from workers.flows.flow import Flow
from workers.store.books.inventory import SqlStockBook
from workers.store.books.orders import SqlOrderBook


def apply(parsed: ParsedEvent, connection: Connection, downstream: Mapping[str, Downstream]) -> object:
    stock, orders, channels = SqlStockBook(connection), SqlOrderBook(connection), downstream["channels"]
    event = parsed.event
    if isinstance(event, InventoryAdjustedV1):
        return adjust_stock(event, stock=stock, orders=orders, channels=channels)
    if isinstance(event, InventoryCountedV1):
        return count_stock(event, stock=stock, orders=orders, channels=channels)
    raise AssertionError(f"the inventory flow has no handler for {parsed.contract.name}")


FLOW = Flow(name=NAME, systems=("channels",), apply=apply)
