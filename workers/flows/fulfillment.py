"""The fulfillment flow's wiring: dispatches and deliveries on the SQL order, stock and shipment books."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import Connection

from contracts.fulfillment import FLOW as NAME
from contracts.fulfillment import ShipmentDeliveredV1, ShipmentDispatchedV1
from contracts.registry import ParsedEvent
from handlers.downstream import Downstream
from handlers.fulfillment import deliver_shipment, dispatch_shipment
from workers.flows.flow import Flow
from workers.store.books.fulfillment import SqlShipmentBook
from workers.store.books.inventory import SqlStockBook
from workers.store.books.orders import SqlOrderBook


def apply(parsed: ParsedEvent, connection: Connection, downstream: Mapping[str, Downstream]) -> object:
    orders, shipments, notify = SqlOrderBook(connection), SqlShipmentBook(connection), downstream["notify"]
    event = parsed.event
    if isinstance(event, ShipmentDispatchedV1):
        stock = SqlStockBook(connection)
        return dispatch_shipment(event, orders=orders, stock=stock, shipments=shipments, notify=notify)
    if isinstance(event, ShipmentDeliveredV1):
        return deliver_shipment(event, orders=orders, shipments=shipments, notify=notify)
    raise AssertionError(f"the fulfillment flow has no handler for {parsed.contract.name}")


FLOW = Flow(name=NAME, systems=("notify",), apply=apply)
