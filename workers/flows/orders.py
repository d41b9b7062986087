"""The orders flow's wiring: `order.created` places an order, `order.cancelled` cancels it, on SQL ports."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import Connection

from contracts.orders import FLOW as NAME
from contracts.orders import OrderCancelledV1, OrderCreatedV2
from contracts.registry import ParsedEvent
from handlers.downstream import Downstream
from handlers.orders import cancel_order, place_order
from workers.flows.flow import Flow
from workers.store.books.inventory import SqlStockBook
from workers.store.books.orders import SqlOrderBook


def apply(parsed: ParsedEvent, connection: Connection, downstream: Mapping[str, Downstream]) -> object:
    orders, stock = SqlOrderBook(connection), SqlStockBook(connection)
    erp, channels = downstream["erp"], downstream["channels"]
    event = parsed.event
    if isinstance(event, OrderCreatedV2):
        return place_order(event, orders=orders, stock=stock, erp=erp, channels=channels)
    if isinstance(event, OrderCancelledV1):
        return cancel_order(event, orders=orders, stock=stock, erp=erp, channels=channels)
    raise AssertionError(f"the orders flow has no handler for {parsed.contract.name}")


FLOW = Flow(name=NAME, systems=("erp", "channels"), apply=apply)
