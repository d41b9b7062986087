"""The catalog flow's wiring: price changes and product updates on the SQL catalog."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import Connection

from contracts.catalog import FLOW as NAME
from contracts.catalog import PriceChangedV1, ProductUpdatedV1
from contracts.registry import ParsedEvent
from handlers.catalog import change_price, update_product
from handlers.downstream import Downstream
from workers.flows.flow import Flow
from workers.store.books.catalog import SqlCatalog


def apply(parsed: ParsedEvent, connection: Connection, downstream: Mapping[str, Downstream]) -> object:
    catalog, channels = SqlCatalog(connection), downstream["channels"]
    event = parsed.event
    if isinstance(event, PriceChangedV1):
        return change_price(event, catalog=catalog, channels=channels)
    if isinstance(event, ProductUpdatedV1):
        return update_product(event, catalog=catalog, channels=channels)
    raise AssertionError(f"the catalog flow has no handler for {parsed.contract.name}")


FLOW = Flow(name=NAME, systems=("channels",), apply=apply)
