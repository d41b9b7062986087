"""Newest wins in PostgreSQL itself: an older event that read no row before a newer one committed cannot overwrite it.

Each test replays the interleaving the chaos soak hit, on two real connections: the older event's
transaction reads (and finds no row), the newer event's transaction runs and commits, then the older
one writes. Only the database can still tell that the older write is stale.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import pytest
from sqlalchemy import Connection, Engine, select

from contracts.catalog import PriceChangedV1, ProductUpdatedV1
from contracts.inventory import InventoryCountedV1
from handlers.catalog import Price, Product, change_price, update_product
from handlers.inventory import StockChanged, count_stock
from handlers.outcomes import Stale
from handlers.stock import StockLevel
from tests.integration.conftest import Database
from tests.support.fakes import RecordingDownstream
from tests.support.interleaving import Rival
from workers.store.books.catalog import SqlCatalog
from workers.store.books.inventory import SqlStockBook
from workers.store.books.orders import SqlOrderBook
from workers.store.db import make_engine, migrate
from workers.store.tables import prices, products, stock_levels

pytestmark = pytest.mark.integration


@pytest.fixture
def engine(database: Database) -> Iterator[Engine]:
    """The test's own PostgreSQL database, migrated."""
    engine = make_engine(database.url)
    migrate(engine)
    try:
        yield engine
    finally:
        engine.dispose()


def price_changed(effective_at: str, amount: int) -> PriceChangedV1:
    return PriceChangedV1.model_validate(
        {"sku": "PRC-002924", "currency": "GBP", "amount_minor": amount, "effective_at": effective_at}
    )


def product_updated(revision: int) -> ProductUpdatedV1:
    return ProductUpdatedV1.model_validate({"sku": "PRD-001491", "revision": revision, "title": f"rev {revision}"})


class CatalogPausedBeforeWriting(SqlCatalog):
    """A catalog that runs the rival transaction after the handler's read, just before its write."""

    def __init__(self, connection: Connection, rival: Rival[object]) -> None:
        super().__init__(connection)
        self.rival = rival
        self.rival_committed_first: bool | None = None

    def save_price(self, price: Price) -> bool:
        self.rival_committed_first = self.rival.run_until_committed_or_blocked()
        return super().save_price(price)

    def save_product(self, product: Product) -> bool:
        self.rival_committed_first = self.rival.run_until_committed_or_blocked()
        return super().save_product(product)


def test_an_older_price_that_read_no_row_is_stale_once_a_newer_price_committed_meanwhile(engine: Engine) -> None:
    newer_channels, older_channels = RecordingDownstream(), RecordingDownstream()
    newer = price_changed("2026-11-27T00:00:00Z", 4250)
    rival: Rival[object] = Rival(
        engine, lambda connection: change_price(newer, catalog=SqlCatalog(connection), channels=newer_channels)
    )

    with engine.begin() as connection:
        catalog = CatalogPausedBeforeWriting(connection, rival)
        outcome = change_price(price_changed("2026-11-26T00:00:00Z", 4000), catalog=catalog, channels=older_channels)

    assert catalog.rival_committed_first, "the newer price committed between the older one's read and write"
    assert isinstance(rival.finish(), Price)
    assert isinstance(outcome, Stale)
    assert "is not newer than the current one" in outcome.reason
    with engine.connect() as connection:
        stored = connection.execute(select(prices.c.amount_minor, prices.c.effective_at)).one()
    assert stored.amount_minor == 4250
    assert stored.effective_at == datetime.fromisoformat("2026-11-27T00:00:00+00:00")
    assert [payload["amount_minor"] for _path, payload, _key in newer_channels.posts] == [4250]
    assert older_channels.posts == [], "the channels must not be told the older price last"


def test_an_older_product_revision_that_read_no_row_is_stale_once_a_newer_one_committed_meanwhile(
    engine: Engine,
) -> None:
    newer_channels, older_channels = RecordingDownstream(), RecordingDownstream()
    rival: Rival[object] = Rival(
        engine,
        lambda connection: update_product(product_updated(2), catalog=SqlCatalog(connection), channels=newer_channels),
    )

    with engine.begin() as connection:
        catalog = CatalogPausedBeforeWriting(connection, rival)
        outcome = update_product(product_updated(1), catalog=catalog, channels=older_channels)

    assert catalog.rival_committed_first, "the newer revision committed between the older one's read and write"
    assert isinstance(rival.finish(), Product)
    assert isinstance(outcome, Stale)
    assert "revision 1 is not above" in outcome.reason
    with engine.connect() as connection:
        stored = connection.execute(select(products.c.revision, products.c.title)).one()
    assert (stored.revision, stored.title) == (2, "rev 2")
    assert older_channels.posts == []


def test_a_newer_price_that_waits_for_an_older_ones_insert_still_replaces_it(engine: Engine) -> None:
    """The other order of the same race: the newer event's write meets the older's row before it commits."""
    channels = RecordingDownstream()
    rival: Rival[object] = Rival(
        engine,
        lambda connection: change_price(
            price_changed("2026-11-27T00:00:00Z", 4250), catalog=SqlCatalog(connection), channels=channels
        ),
    )

    with engine.begin() as connection:
        older = change_price(
            price_changed("2026-11-26T00:00:00Z", 4000), catalog=SqlCatalog(connection), channels=channels
        )
        committed = rival.run_until_committed_or_blocked()

    assert isinstance(older, Price)
    assert committed is False, "the newer price's write waits for the older one's uncommitted row"
    assert isinstance(rival.finish(), Price)
    with engine.connect() as connection:
        assert connection.execute(select(prices.c.amount_minor)).scalar_one() == 4250


class StockPausedBeforeSaving(SqlStockBook):
    """A stock book that runs the rival transaction after the handler read the level, before it saves."""

    def __init__(self, connection: Connection, rival: Rival[object]) -> None:
        super().__init__(connection)
        self.rival = rival
        self.rival_committed_first: bool | None = None

    def save(self, level: StockLevel) -> None:
        if self.rival_committed_first is None:
            self.rival_committed_first = self.rival.run_until_committed_or_blocked()
        super().save(level)


def inventory_counted(on_hand: int, sequence: int) -> InventoryCountedV1:
    return InventoryCountedV1.model_validate(
        {"sku": "STK-000017", "location": "BER-1", "on_hand": on_hand, "sequence": sequence}
    )


def test_an_older_count_at_a_new_location_holds_the_row_it_created_so_a_newer_count_waits_and_wins(
    engine: Engine,
) -> None:
    channels = RecordingDownstream()

    def newer(connection: Connection) -> object:
        book = SqlStockBook(connection)
        return count_stock(inventory_counted(9, 2), stock=book, orders=SqlOrderBook(connection), channels=channels)

    rival: Rival[object] = Rival(engine, newer)
    with engine.begin() as connection:
        stock = StockPausedBeforeSaving(connection, rival)
        older = count_stock(inventory_counted(5, 1), stock=stock, orders=SqlOrderBook(connection), channels=channels)

    assert stock.rival_committed_first is False, "the newer count must wait for the row the older one created"
    assert isinstance(older, StockChanged)
    assert isinstance(rival.finish(), StockChanged)
    with engine.connect() as connection:
        row = connection.execute(select(stock_levels.c.on_hand, stock_levels.c.last_sequence)).one()
    assert (row.on_hand, row.last_sequence) == (9, 2)
