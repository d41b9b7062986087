"""On SQLite, the SQL books decide newest-wins themselves: a write over a newer row changes nothing and says so."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Connection, Engine, select

from contracts.catalog import PriceChangedV1
from handlers.catalog import Price, Product, change_price
from handlers.errors import TransientError
from handlers.outcomes import Stale
from handlers.payments import Payment
from tests.support.fakes import RecordingDownstream
from tests.support.interleaving import Rival
from workers.store.books.catalog import SqlCatalog
from workers.store.books.payments import SqlPaymentBook
from workers.store.tables import prices, products

NOV_26 = datetime(2026, 11, 26, tzinfo=UTC)


def price(effective_at: datetime, amount: int) -> Price:
    return Price("TEE", "EUR", amount, effective_at)


def stored_prices(engine: Engine) -> list[tuple[int, datetime]]:
    with engine.connect() as connection:
        rows = connection.execute(select(prices.c.amount_minor, prices.c.effective_at)).all()
    return [(row.amount_minor, row.effective_at.replace(tzinfo=UTC)) for row in rows]


def test_a_first_price_is_inserted_and_a_later_one_replaces_it(engine: Engine) -> None:
    with engine.begin() as connection:
        catalog = SqlCatalog(connection)
        assert catalog.save_price(price(NOV_26, 1799)) is True
        assert catalog.save_price(price(NOV_26 + timedelta(microseconds=1), 1499)) is True

    assert stored_prices(engine) == [(1499, NOV_26 + timedelta(microseconds=1))]


@pytest.mark.parametrize("earlier", [timedelta(0), timedelta(microseconds=1), timedelta(days=400)])
def test_a_price_not_effective_later_than_the_stored_one_changes_nothing_and_says_so(
    engine: Engine, earlier: timedelta
) -> None:
    with engine.begin() as connection:
        SqlCatalog(connection).save_price(price(NOV_26, 1799))
        assert SqlCatalog(connection).save_price(price(NOV_26 - earlier, 999)) is False

    assert stored_prices(engine) == [(1799, NOV_26)]


def test_times_with_offsets_are_compared_as_instants_in_sql(engine: Engine) -> None:
    tokyo = timezone(timedelta(hours=9))
    with engine.begin() as connection:
        catalog = SqlCatalog(connection)
        catalog.save_price(price(NOV_26, 1799))
        later_instant_earlier_wall_clock = datetime(2026, 11, 26, 0, 30, tzinfo=timezone(timedelta(hours=-1)))
        assert catalog.save_price(price(later_instant_earlier_wall_clock, 1699)) is True
        assert catalog.save_price(price(datetime(2026, 11, 26, 10, 0, tzinfo=tokyo), 1499)) is False  # 01:00 UTC

    assert stored_prices(engine) == [(1699, datetime(2026, 11, 26, 1, 30, tzinfo=UTC))]


def test_a_product_revision_applies_only_above_the_stored_one(engine: Engine) -> None:
    with engine.begin() as connection:
        catalog = SqlCatalog(connection)
        assert catalog.save_product(Product("TEE", 2, "rev 2", "", {"colour": "red"})) is True
        assert catalog.save_product(Product("TEE", 2, "rev 2 again", "", {})) is False
        assert catalog.save_product(Product("TEE", 1, "rev 1", "", {})) is False
        assert catalog.save_product(Product("TEE", 3, "rev 3", "neu", {"colour": "rot"})) is True

    with engine.connect() as connection:
        row = connection.execute(select(products)).mappings().one()
    stored = (row["revision"], row["title"], row["description"], row["attributes"])
    assert stored == (3, "rev 3", "neu", {"colour": "rot"})


class CatalogPausedBeforeWriting(SqlCatalog):
    def __init__(self, connection: Connection, rival: Rival[object]) -> None:
        super().__init__(connection)
        self.rival = rival

    def save_price(self, price: Price) -> bool:
        assert self.rival.run_until_committed_or_blocked(), "on SQLite the rival commits before this write"
        return super().save_price(price)


def test_an_older_price_that_read_no_row_is_stale_once_a_newer_one_committed_before_its_write(engine: Engine) -> None:
    def event(effective_at: str, amount: int) -> PriceChangedV1:
        data = {"sku": "TEE", "currency": "EUR", "amount_minor": amount, "effective_at": effective_at}
        return PriceChangedV1.model_validate(data)

    channels = RecordingDownstream()
    newer = event("2026-11-27T00:00:00Z", 4250)
    rival: Rival[object] = Rival(
        engine, lambda connection: change_price(newer, catalog=SqlCatalog(connection), channels=channels)
    )
    with engine.begin() as connection:
        catalog = CatalogPausedBeforeWriting(connection, rival)
        outcome = change_price(event("2026-11-26T00:00:00Z", 4000), catalog=catalog, channels=channels)

    assert isinstance(rival.finish(), Price)
    assert isinstance(outcome, Stale)
    assert "stored by a concurrent change" in outcome.reason
    assert stored_prices(engine) == [(4250, datetime(2026, 11, 27, tzinfo=UTC))]
    assert [payload["amount_minor"] for _path, payload, _key in channels.posts] == [4250]


def test_a_payment_it_did_not_find_is_never_written_over_one_stored_meanwhile(engine: Engine) -> None:
    with engine.begin() as connection:
        SqlPaymentBook(connection).save(Payment("PAY-1", "ORD-A", "EUR", authorized_minor=1999))

    with pytest.raises(TransientError, match="PAY-1 was stored by a concurrent event"), engine.begin() as connection:
        SqlPaymentBook(connection).save(Payment("PAY-1", "ORD-B", "EUR", status="failed"))

    with engine.begin() as connection:
        book = SqlPaymentBook(connection)
        found = book.get("PAY-1")
        assert found is not None
        assert (found.order_id, found.status, found.authorized_minor) == ("ORD-A", "authorized", 1999)
        found.status = "failed"
        book.save(found)  # read first, so this one updates
    with engine.connect() as connection:
        assert SqlPaymentBook(connection).get("PAY-1") == Payment("PAY-1", "ORD-A", "EUR", 1999, status="failed")
