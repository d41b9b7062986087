"""The orders flow's wiring: `order.created` places an order, `order.cancelled` cancels it, on SQL ports."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import Connection

from contracts.orders import FLOW as NAME
from contracts.orders import OrderCancelledV1, OrderCreatedV2
from contracts.registry import ParsedEvent
from handlers.downstream import Downstream
from handlers.orders import cancel_order, place_order
from handlers.stock import AllocationChanged
from workers.flows.flow import Flow
from workers.store.books.inventory import SqlStockBook
from workers.store.books.orders import SqlOrderBook


def apply(parsed: ParsedEvent, connection: Connection, downstream: Mapping[str, Downstream]) -> object:
    orders, stock = SqlOrderBook(connection), SqlStockBook(connection)
    erp, channels = downstream["erp"], downstream["channels"]
    event = parsed.event
    if isinstance(event, OrderCreatedV2):
        return _place(event, connection, erp, channels)
    if isinstance(event, OrderCancelledV1):
        return cancel_order(event, orders=orders, stock=stock, erp=erp, channels=channels)
    raise AssertionError(f"the orders flow has no handler for {parsed.contract.name}")


def _place(event: OrderCreatedV2, connection: Connection, erp: Downstream, channels: Downstream) -> object:
    """Place the order with the stock locked last; if another order moved the stock meanwhile, again locked first."""
    try:
        with connection.begin_nested():
            return place_order(
                event, orders=SqlOrderBook(connection), stock=SqlStockBook(connection), erp=erp, channels=channels
            )
    except AllocationChanged:
        orders, stock = SqlOrderBook(connection), SqlStockBook(connection)
        return place_order(event, orders=orders, stock=stock, erp=erp, channels=channels, lock_first=True)


FLOW = Flow(name=NAME, systems=("erp", "channels"), apply=apply)
