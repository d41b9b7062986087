"""The orders flow's wiring: `order.created` runs handlers.orders.place_order on the SQL ports."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import Connection

from contracts.orders import FLOW as NAME
from contracts.orders import OrderCreatedV2
from contracts.registry import ParsedEvent
from handlers.downstream import Downstream
from handlers.orders import place_order
from workers.flow import Flow
from workers.store.orders import SqlOrderBook
from workers.store.stock import SqlStockLedger


def apply(parsed: ParsedEvent, connection: Connection, downstream: Mapping[str, Downstream]) -> object:
    order = parsed.event
    assert isinstance(order, OrderCreatedV2), f"unexpected contract {parsed.contract.name}"
    return place_order(order, orders=SqlOrderBook(connection), stock=SqlStockLedger(connection), erp=downstream["erp"])


FLOW = Flow(name=NAME, systems=("erp",), apply=apply)
