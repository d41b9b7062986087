"""Placing an order reserves stock line by line or backorders it, keeps it, and exports it to the ERP once."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.orders import OrderCreatedV2
from handlers.errors import PermanentError, TransientError
from handlers.order_book import Line, Order
from handlers.orders import place_order
from handlers.stock import AllocationChanged, StockLevel
from tests.support.fakes import InMemoryOrderBook, InMemoryStockBook, RecordingDownstream


def an_order(*lines: tuple[str, int], order_id: str = "ORD-1", **fields: Any) -> OrderCreatedV2:
    return OrderCreatedV2.model_validate(
        {
            "order_id": order_id,
            "channel": "storefront",
            "customer": {"customer_id": "C-1", "email": "ana@example.com"},
            "currency": "EUR",
            "lines": [
                {"line_id": f"L{n}", "sku": sku, "quantity": quantity, "unit_price_minor": 1000}
                for n, (sku, quantity) in enumerate(lines, start=1)
            ],
            "total_minor": 1000 * sum(quantity for _sku, quantity in lines),
            **fields,
        }
    )


def place(
    order: OrderCreatedV2, stock: InMemoryStockBook, erp: RecordingDownstream | None = None
) -> tuple[Order, InMemoryOrderBook, RecordingDownstream]:
    book, erp = InMemoryOrderBook(), erp or RecordingDownstream()
    placed = place_order(order, orders=book, stock=stock, erp=erp, channels=RecordingDownstream())
    return placed, book, erp


def test_an_order_whose_every_line_is_in_stock_is_reserved() -> None:
    stock = InMemoryStockBook({("TEE", "berlin"): 5, ("MUG", "berlin"): 1})

    placed, _book, _erp = place(an_order(("TEE", 2), ("MUG", 1)), stock)

    assert placed.status == "reserved"
    assert placed.lines == [
        Line(line_id="L1", sku="TEE", quantity=2, unit_price_minor=1000, status="reserved", location="berlin"),
        Line(line_id="L2", sku="MUG", quantity=1, unit_price_minor=1000, status="reserved", location="berlin"),
    ]
    assert stock.available("TEE", "berlin") == 3
    assert stock.available("MUG", "berlin") == 0


def test_an_order_with_no_stock_for_any_line_is_backordered_in_full() -> None:
    stock = InMemoryStockBook({("TEE", "berlin"): 1})

    placed, _book, _erp = place(an_order(("TEE", 2), ("MUG", 1)), stock)

    assert placed.status == "backordered"
    assert [(line.status, line.location) for line in placed.lines] == [("backordered", None)] * 2
    assert stock.available("TEE", "berlin") == 1


def test_an_order_with_stock_for_some_lines_is_partially_backordered() -> None:
    stock = InMemoryStockBook({("TEE", "berlin"): 5})

    placed, _book, _erp = place(an_order(("TEE", 2), ("MUG", 1)), stock)

    assert placed.status == "partially_backordered"
    assert [line.status for line in placed.lines] == ["reserved", "backordered"]


def test_a_line_is_reserved_whole_at_the_first_location_that_covers_it_never_split() -> None:
    stock = InMemoryStockBook({("TEE", "a-hamburg"): 2, ("TEE", "b-berlin"): 3, ("TEE", "c-munich"): 9})

    placed, _book, _erp = place(an_order(("TEE", 3)), stock)

    assert placed.lines[0].location == "b-berlin"
    assert stock.available("TEE", "a-hamburg") == 2
    assert stock.available("TEE", "c-munich") == 9


def test_a_line_larger_than_any_single_location_is_backordered_even_if_the_total_would_cover_it() -> None:
    stock = InMemoryStockBook({("TEE", "berlin"): 2, ("TEE", "munich"): 2})

    placed, _book, _erp = place(an_order(("TEE", 3)), stock)

    assert placed.status == "backordered"


def test_two_lines_of_the_same_sku_draw_on_the_same_stock() -> None:
    stock = InMemoryStockBook({("TEE", "berlin"): 3})

    placed, _book, _erp = place(an_order(("TEE", 2), ("TEE", 2)), stock)

    assert [line.status for line in placed.lines] == ["reserved", "backordered"]


def test_every_sku_of_the_order_is_locked_at_once_in_sorted_order_before_any_reservation() -> None:
    stock = InMemoryStockBook({("TEE", "berlin"): 5, ("MUG", "berlin"): 5})

    place(an_order(("TEE", 1), ("MUG", 1), ("TEE", 1)), stock)

    assert stock.locked == [["MUG", "TEE"]]


def test_the_order_is_kept_in_the_order_book_with_its_outcome() -> None:
    order = an_order(("TEE", 1))

    placed, book, _erp = place(order, InMemoryStockBook({("TEE", "berlin"): 1}))

    assert book.orders == {"ORD-1": placed}
    assert [line.sku for line in book.orders["ORD-1"].lines] == ["TEE"]


def test_the_erp_receives_one_post_to_orders_keyed_by_the_order_id() -> None:
    stock = InMemoryStockBook({("TEE", "berlin"): 5})

    _placed, _book, erp = place(an_order(("TEE", 2), ("MUG", 1), order_id="ORD-77"), stock)

    assert len(erp.posts) == 1
    path, payload, key = erp.posts[0]
    assert path == "/orders"
    assert key == "order-export:ORD-77"
    assert payload["order_id"] == "ORD-77"
    assert payload["status"] == "partially_backordered"
    assert payload["customer_id"] == "C-1"
    assert payload["currency"] == "EUR"
    assert payload["total_minor"] == 3000
    assert payload["lines"] == [
        {
            "line_id": "L1",
            "sku": "TEE",
            "quantity": 2,
            "unit_price_minor": 1000,
            "status": "reserved",
            "location": "berlin",
        },
        {
            "line_id": "L2",
            "sku": "MUG",
            "quantity": 1,
            "unit_price_minor": 1000,
            "status": "backordered",
            "location": None,
        },
    ]


def test_placing_the_same_order_again_sends_the_same_idempotency_key() -> None:
    order = an_order(("TEE", 1), order_id="ORD-5")
    erp = RecordingDownstream()

    place(order, InMemoryStockBook(), erp)
    place(order, InMemoryStockBook(), erp)

    assert [key for _path, _payload, key in erp.posts] == ["order-export:ORD-5", "order-export:ORD-5"]


def test_a_tax_exempt_marketplace_order_is_exported_as_such() -> None:
    order = an_order(("TEE", 1), channel="marketplace:amazon_de", tax_exempt=True)

    _placed, _book, erp = place(order, InMemoryStockBook({("TEE", "berlin"): 1}))

    payload = erp.posts[0][1]
    assert payload["channel"] == "marketplace:amazon_de"
    assert payload["tax_exempt"] is True


def test_an_ordinary_storefront_order_is_exported_as_taxable() -> None:
    _placed, _book, erp = place(an_order(("TEE", 1)), InMemoryStockBook())

    assert erp.posts[0][1]["channel"] == "storefront"
    assert erp.posts[0][1]["tax_exempt"] is False


@pytest.mark.parametrize(
    "error", [TransientError("ERP answered 503", retry_after=30.0), PermanentError("ERP answered 422")]
)
def test_an_erp_error_propagates_unchanged_for_the_runtime_to_handle(error: Exception) -> None:
    erp = RecordingDownstream(fail_with=error)

    with pytest.raises(type(error)) as caught:
        place(an_order(("TEE", 1)), InMemoryStockBook(), erp)

    assert caught.value is error
    if isinstance(caught.value, TransientError):
        assert caught.value.retry_after == 30.0


SKUS = ("TEE", "MUG", "CAP")
LOCATIONS = ("berlin", "hamburg", "munich")
stock_levels = st.dictionaries(
    st.tuples(st.sampled_from(SKUS), st.sampled_from(LOCATIONS)), st.integers(0, 20), max_size=9
)
order_lines = st.lists(st.tuples(st.sampled_from(SKUS), st.integers(1, 15)), min_size=1, max_size=5)


@settings(max_examples=200)
@given(stock_levels, st.lists(order_lines, max_size=12))
def test_reservations_never_exceed_stock_on_hand_over_any_sequence_of_orders(
    on_hand: dict[tuple[str, str], int], orders: list[list[tuple[str, int]]]
) -> None:
    stock = InMemoryStockBook(on_hand)
    expected_reserved = dict.fromkeys(on_hand, 0)

    for number, lines in enumerate(orders):
        placed, _book, _erp = place(an_order(*lines, order_id=f"ORD-{number}"), stock)

        for line in placed.lines:
            if line.status == "reserved":
                assert line.location is not None
                expected_reserved[(line.sku, line.location)] += line.quantity
        for key, quantity in on_hand.items():
            assert 0 <= stock.reserved.get(key, 0) <= quantity
            assert stock.available(*key) >= 0
        assert {k: v for k, v in stock.reserved.items() if k in on_hand} == expected_reserved
        reserved_lines = sum(1 for line in placed.lines if line.status == "reserved")
        expected_status = (
            "reserved"
            if reserved_lines == len(lines)
            else "backordered"
            if reserved_lines == 0
            else "partially_backordered"
        )
        assert placed.status == expected_status


class StaleStockBook(InMemoryStockBook):
    """A stock book whose unlocked read is older than its rows, as when another order committed in between."""

    def __init__(self, on_hand: dict[tuple[str, str], int], seen: dict[tuple[str, str], int]) -> None:
        super().__init__(on_hand)
        self.seen = InMemoryStockBook(seen)

    def peek(self, skus: Iterable[str]) -> dict[str, list[StockLevel]]:
        return self.seen.peek(skus)


def test_the_stock_is_locked_only_after_the_order_and_its_export_are_written() -> None:
    events: list[str] = []

    class Watching(InMemoryStockBook):
        def lock(self, skus: Iterable[str]) -> None:
            events.append(f"lock {','.join(skus)} after {len(erp.posts)} ERP posts and {len(book.orders)} orders")

    stock, book, erp = Watching({("TEE", "berlin"): 5}), InMemoryOrderBook(), RecordingDownstream()
    place_order(an_order(("TEE", 2)), orders=book, stock=stock, erp=erp, channels=RecordingDownstream())

    assert events == ["lock TEE after 1 ERP posts and 1 orders"]
    assert stock.reserved == {("TEE", "berlin"): 2}


def test_a_plan_overtaken_by_another_order_is_refused_under_the_lock_and_places_again_locked_first() -> None:
    stock = StaleStockBook({("TEE", "a-hamburg"): 1, ("TEE", "b-berlin"): 5}, seen={("TEE", "a-hamburg"): 3})

    with pytest.raises(AllocationChanged, match="TEE"):
        place(an_order(("TEE", 2)), stock)

    # The caller rolls the refused attempt back (a savepoint) and places the order again, locking first.
    rolled_back = InMemoryStockBook({("TEE", "a-hamburg"): 1, ("TEE", "b-berlin"): 5})
    again, _book, erp = place_order_locked_first(an_order(("TEE", 2)), rolled_back)
    assert [(line.status, line.location) for line in again.lines] == [("reserved", "b-berlin")]
    assert erp.posts[0][1]["lines"][0]["location"] == "b-berlin"
    assert rolled_back.reserved == {("TEE", "a-hamburg"): 0, ("TEE", "b-berlin"): 2}
    assert rolled_back.locked[0] == ["TEE"]


def test_a_line_planned_as_a_backorder_is_refused_when_stock_arrived_before_the_lock() -> None:
    stock = StaleStockBook({("TEE", "berlin"): 4}, seen={})

    with pytest.raises(AllocationChanged):
        place(an_order(("TEE", 2)), stock)


def place_order_locked_first(
    order: OrderCreatedV2, stock: InMemoryStockBook
) -> tuple[Order, InMemoryOrderBook, RecordingDownstream]:
    book, erp = InMemoryOrderBook(), RecordingDownstream()
    placed = place_order(order, orders=book, stock=stock, erp=erp, channels=RecordingDownstream(), lock_first=True)
    return placed, book, erp


def test_an_order_of_many_lines_reads_the_stock_once_locks_it_once_sorted_and_writes_it_once() -> None:
    stock = InMemoryStockBook({("TEE", "berlin"): 5, ("MUG", "berlin"): 5, ("LAMP", "hamburg"): 1})

    placed, _book, _erp = place(an_order(("TEE", 2), ("MUG", 1), ("LAMP", 1), ("TEE", 1)), stock)

    assert stock.peeked == [["LAMP", "MUG", "TEE"]]
    assert stock.locked == [["LAMP", "MUG", "TEE"]]
    assert stock.saved_together == [[("LAMP", "hamburg"), ("MUG", "berlin"), ("TEE", "berlin")]]
    assert stock.reserved == {("TEE", "berlin"): 3, ("MUG", "berlin"): 1, ("LAMP", "hamburg"): 1}
    assert [line.status for line in placed.lines] == ["reserved"] * 4
