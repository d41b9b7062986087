"""The returns flow's wiring: RMAs and receipts on the SQL order, stock and return books."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import Connection

from contracts.registry import ParsedEvent
from contracts.returns import FLOW as NAME
from contracts.returns import ReturnReceivedV1, ReturnRequestedV1
from handlers.downstream import Downstream
from handlers.returns import receive_return, request_return
from workers.flows.flow import Flow
from workers.store.books.inventory import SqlStockBook
from workers.store.books.orders import SqlOrderBook
from workers.store.books.returns import SqlReturnBook


def apply(parsed: ParsedEvent, connection: Connection, downstream: Mapping[str, Downstream]) -> object:
    orders, stock, returns = SqlOrderBook(connection), SqlStockBook(connection), SqlReturnBook(connection)
    event = parsed.event
    if isinstance(event, ReturnRequestedV1):
        return request_return(event, orders=orders, stock=stock, returns=returns)
    if isinstance(event, ReturnReceivedV1):
        return receive_return(
            event,
            orders=orders,
            stock=stock,
            returns=returns,
            payments=downstream["payments"],
            channels=downstream["channels"],
        )
    raise AssertionError(f"the returns flow has no handler for {parsed.contract.name}")


FLOW = Flow(name=NAME, systems=("payments", "channels"), apply=apply)
