"""Prices and product data are kept newest-wins and propagated to the channels, text exactly as written."""

from __future__ import annotations

from typing import Any

import pytest

from contracts.catalog import PriceChangedV1, ProductUpdatedV1
from handlers.catalog import Price, Product
from handlers.outcomes import Stale
from tests.support.fakes import Shop


def price_changed(effective_at: str, amount: int = 1799, *, currency: str = "EUR", sku: str = "TEE") -> PriceChangedV1:
    return PriceChangedV1.model_validate(
        {"sku": sku, "currency": currency, "amount_minor": amount, "effective_at": effective_at}
    )


def product_updated(revision: int, title: str = "T-Shirt rot", **fields: Any) -> ProductUpdatedV1:
    return ProductUpdatedV1.model_validate({"sku": "TEE", "revision": revision, "title": title, **fields})


# Prices


def test_a_first_price_is_kept_and_sent_to_the_channels_keyed_by_sku_currency_and_instant() -> None:
    shop = Shop()

    price = shop.change_price(price_changed("2026-11-26T00:00:00Z", 1799))

    assert isinstance(price, Price)
    assert shop.catalog.price("TEE", "EUR") == price
    assert shop.channels.posts == [
        (
            "/prices",
            {"sku": "TEE", "currency": "EUR", "amount_minor": 1799, "effective_at": "2026-11-26T00:00:00+00:00"},
            "price:TEE:EUR:2026-11-26T00:00:00+00:00",
        )
    ]


def test_a_newer_price_replaces_the_current_one_and_is_propagated() -> None:
    shop = Shop()
    shop.change_price(price_changed("2026-11-26T00:00:00Z", 1799))

    shop.change_price(price_changed("2026-11-27T00:00:00Z", 1499))

    current = shop.catalog.price("TEE", "EUR")
    assert current is not None
    assert current.amount_minor == 1499
    assert [payload["amount_minor"] for _path, payload, _key in shop.channels.posts] == [1799, 1499]


@pytest.mark.parametrize("effective_at", ["2026-11-25T23:59:59Z", "2026-11-26T00:00:00Z"], ids=["older", "equal"])
def test_a_price_not_newer_than_the_current_one_is_stale_and_nothing_is_posted(effective_at: str) -> None:
    shop = Shop()
    shop.change_price(price_changed("2026-11-26T00:00:00Z", 1799))
    before = shop.snapshot()

    outcome = shop.change_price(price_changed(effective_at, 999))

    assert isinstance(outcome, Stale)
    assert "is not newer than the current one" in outcome.reason
    assert shop.snapshot() == before


def test_times_with_offsets_are_compared_as_instants_not_as_wall_clock_readings() -> None:
    shop = Shop()
    shop.change_price(price_changed("2026-11-26T01:00:00+01:00", 1799))  # 00:00 UTC

    newer = shop.change_price(price_changed("2026-11-26T00:30:00+00:00", 1699))  # earlier wall clock, later instant
    same_instant = shop.change_price(price_changed("2026-11-25T19:30:00-05:00", 1599))  # 00:30 UTC again
    older = shop.change_price(price_changed("2026-11-26T09:00:00+09:00", 1499))  # 00:00 UTC

    assert isinstance(newer, Price)
    assert isinstance(same_instant, Stale)
    assert isinstance(older, Stale)
    assert [payload["amount_minor"] for _path, payload, _key in shop.channels.posts] == [1799, 1699]


def test_the_same_instant_written_with_different_offsets_gives_the_same_key_and_payload() -> None:
    posts = []
    for written in ("2026-11-26T01:00:00+01:00", "2026-11-25T19:00:00-05:00", "2026-11-26T00:00:00Z"):
        shop = Shop()
        shop.change_price(price_changed(written))
        posts.append(shop.channels.posts)

    assert posts[0] == posts[1] == posts[2]
    assert posts[0][0][2] == "price:TEE:EUR:2026-11-26T00:00:00+00:00"


def test_prices_in_different_currencies_are_independent() -> None:
    shop = Shop()
    shop.change_price(price_changed("2026-11-27T00:00:00Z", 1799, currency="EUR"))

    yen = shop.change_price(price_changed("2026-11-26T00:00:00Z", 2480, currency="JPY"))

    assert isinstance(yen, Price)
    assert shop.catalog.price("TEE", "JPY") == yen
    assert shop.channels.posts[-1][1] == {
        "sku": "TEE",
        "currency": "JPY",
        "amount_minor": 2480,
        "effective_at": "2026-11-26T00:00:00+00:00",
    }


def test_prices_of_different_skus_are_independent() -> None:
    shop = Shop()
    shop.change_price(price_changed("2026-11-27T00:00:00Z", sku="TEE"))

    assert isinstance(shop.change_price(price_changed("2026-11-26T00:00:00Z", sku="MUG")), Price)


def test_a_future_price_is_sent_on_with_its_effective_time_for_the_channels_to_schedule() -> None:
    shop = Shop()

    shop.change_price(price_changed("2099-01-01T00:00:00Z", 1299))

    assert shop.channels.posts[0][1]["effective_at"] == "2099-01-01T00:00:00+00:00"


@pytest.mark.parametrize("effective_at", ["2026-11-26T00:00:00", "2026-11-26"])
def test_a_price_without_a_timezone_is_refused_by_the_contract(effective_at: str) -> None:
    with pytest.raises(ValueError, match="effective_at"):
        price_changed(effective_at)


# Products


def test_a_product_update_is_kept_and_sent_to_the_channels_keyed_by_sku_and_revision() -> None:
    shop = Shop()

    product = shop.update_product(product_updated(7, description="Bio-Baumwolle", attributes={"size": "M"}))

    assert product == Product("TEE", 7, "T-Shirt rot", "Bio-Baumwolle", {"size": "M"})
    assert shop.catalog.product("TEE") == product
    assert shop.channels.posts == [
        (
            "/products",
            {
                "sku": "TEE",
                "revision": 7,
                "title": "T-Shirt rot",
                "description": "Bio-Baumwolle",
                "attributes": {"size": "M"},
            },
            "product:TEE:7",
        )
    ]


def test_a_higher_revision_replaces_the_product_data() -> None:
    shop = Shop()
    shop.update_product(product_updated(7, "old title"))

    shop.update_product(product_updated(8, "new title"))

    current = shop.catalog.product("TEE")
    assert current is not None
    assert (current.revision, current.title) == (8, "new title")


@pytest.mark.parametrize("revision", [6, 7], ids=["lower", "equal"])
def test_a_revision_not_above_the_stored_one_is_stale_and_nothing_is_posted(revision: int) -> None:
    shop = Shop()
    shop.update_product(product_updated(7, "current"))
    before = shop.snapshot()

    outcome = shop.update_product(product_updated(revision, "late"))

    assert isinstance(outcome, Stale)
    assert f"revision {revision} is not above the stored 7" in outcome.reason
    assert shop.snapshot() == before


def test_localized_product_text_is_passed_through_exactly_as_the_source_wrote_it() -> None:
    shop = Shop()
    title = "T-Shirt rot, Größe M — Tシャツ 赤 🟥"
    # Greek and Cyrillic letters that look Latin are the point here, hence the noqa.
    description = "Bio-Baumwolle, fair gehandelt.\nΕλληνικά · العربية · 한국어 · naïve café"  # noqa: RUF001
    attributes = {"Farbe": "rötlich", "サイズ": "М (кириллица)"}  # noqa: RUF001

    shop.update_product(product_updated(1, title, description=description, attributes=attributes))

    payload = shop.channels.posts[0][1]
    assert (payload["title"], payload["description"], payload["attributes"]) == (title, description, attributes)
    stored = shop.catalog.product("TEE")
    assert stored is not None
    assert (stored.title, stored.description, stored.attributes) == (title, description, attributes)


# Stale only by the store's word: a newer row committed by a concurrent event after this one read


def test_a_price_the_catalog_refuses_on_saving_is_stale_and_nothing_is_posted() -> None:
    shop = Shop()
    shop.change_price(price_changed("2026-11-27T00:00:00Z", 4250))
    shop.catalog.price = lambda sku, currency: None  # type: ignore[method-assign]  # the read ran before that commit
    before = shop.snapshot()

    outcome = shop.change_price(price_changed("2026-11-26T00:00:00Z", 4000))

    assert isinstance(outcome, Stale)
    assert "stored by a concurrent change" in outcome.reason
    assert shop.snapshot() == before


def test_a_revision_the_catalog_refuses_on_saving_is_stale_and_nothing_is_posted() -> None:
    shop = Shop()
    shop.update_product(product_updated(2, "newer"))
    shop.catalog.product = lambda sku: None  # type: ignore[method-assign]  # the read ran before that commit
    before = shop.snapshot()

    outcome = shop.update_product(product_updated(1, "older"))

    assert isinstance(outcome, Stale)
    assert "revision 1 is not above the one a concurrent update stored" in outcome.reason
    assert shop.snapshot() == before
