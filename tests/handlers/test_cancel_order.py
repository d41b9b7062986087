"""Cancelling an order gives its reservations back, marks it cancelled, and tells the ERP and the channels."""

from __future__ import annotations

import pytest

from contracts.fulfillment import ShipmentDispatchedV1
from contracts.inventory import InventoryAdjustedV1
from contracts.orders import OrderCancelledV1, OrderCreatedV2
from handlers.errors import PermanentError, TransientError
from handlers.inventory import StockChanged
from tests.support.fakes import Shop


def an_order(*lines: tuple[str, int], order_id: str = "ORD-1") -> OrderCreatedV2:
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
        }
    )


def a_cancel(order_id: str = "ORD-1", reason: str = "customer_request") -> OrderCancelledV1:
    return OrderCancelledV1.model_validate({"order_id": order_id, "reason": reason})


def a_dispatch(
    line_id: str, quantity: int, *, location: str = "berlin", order_id: str = "ORD-1"
) -> ShipmentDispatchedV1:
    return ShipmentDispatchedV1.model_validate(
        {
            "shipment_id": f"SHP-{order_id}-{line_id}",
            "order_id": order_id,
            "location": location,
            "carrier": "DHL",
            "lines": [{"line_id": line_id, "quantity": quantity}],
        }
    )


def test_cancelling_a_reserved_order_makes_its_stock_available_again() -> None:
    shop = Shop({("TEE", "berlin"): 5, ("MUG", "berlin"): 2})
    shop.place(an_order(("TEE", 3), ("MUG", 2)))
    assert shop.stock.available("TEE", "berlin") == 2

    shop.cancel(a_cancel())

    assert shop.level("TEE", "berlin").reserved == 0
    assert shop.stock.available("TEE", "berlin") == 5
    assert shop.stock.available("MUG", "berlin") == 2


def test_a_cancelled_order_and_every_line_of_it_are_kept_as_cancelled_with_no_location() -> None:
    shop = Shop({("TEE", "berlin"): 5})
    shop.place(an_order(("TEE", 3), ("MUG", 1)))

    cancelled = shop.cancel(a_cancel())

    assert cancelled.status == "cancelled"
    assert shop.order("ORD-1") == cancelled
    assert [(line.status, line.location) for line in cancelled.lines] == [("cancelled", None)] * 2


def test_the_erp_is_told_of_the_cancellation_keyed_by_the_order_id() -> None:
    shop = Shop({("TEE", "berlin"): 5})
    shop.place(an_order(("TEE", 1), order_id="ORD-42"))

    shop.cancel(a_cancel("ORD-42", reason="fraud"))

    assert shop.erp.posts[-1] == (
        "/orders/ORD-42/cancellation",
        {"order_id": "ORD-42", "reason": "fraud"},
        "order-cancel:ORD-42",
    )


@pytest.mark.parametrize(
    ("order_id", "path"),
    [
        ("ORD-1/../../admin/wipe", "/orders/ORD-1%2F..%2F..%2Fadmin%2Fwipe/cancellation"),
        ("ORD-2?force=true#", "/orders/ORD-2%3Fforce%3Dtrue%23/cancellation"),
        ("ORD-3%2F..%2Fadmin", "/orders/ORD-3%252F..%252Fadmin/cancellation"),
        ("..", "/orders/../cancellation".replace("/../", "/%2E%2E/")),
    ],
)
def test_an_order_id_stays_one_path_segment_of_the_cancellation_whatever_it_contains(order_id: str, path: str) -> None:
    shop = Shop({("TEE", "berlin"): 5})
    shop.place(an_order(("TEE", 1), order_id=order_id))

    shop.cancel(a_cancel(order_id))

    sent_path, payload, key = shop.erp.posts[-1]
    assert sent_path == path
    assert sent_path.split("/")[1::2] == ["orders", "cancellation"]
    assert (payload["order_id"], key) == (order_id, f"order-cancel:{order_id}")


def test_the_channels_are_sent_the_new_available_to_promise_of_each_released_sku() -> None:
    shop = Shop({("TEE", "berlin"): 5, ("TEE", "hamburg"): 4, ("MUG", "berlin"): 1})
    shop.place(an_order(("TEE", 3), ("MUG", 1)))
    shop.channels.posts.clear()

    shop.cancel(a_cancel())

    assert shop.channels.posts == [
        ("/availability", {"sku": "MUG", "available": 1}, "atp:order.cancelled:ORD-1:MUG"),
        ("/availability", {"sku": "TEE", "available": 9}, "atp:order.cancelled:ORD-1:TEE"),
    ]


def test_cancelling_a_split_order_releases_each_line_at_the_location_it_was_reserved_at() -> None:
    shop = Shop({("TEE", "a-berlin"): 2, ("TEE", "b-hamburg"): 5, ("MUG", "b-hamburg"): 1})
    placed = shop.place(an_order(("TEE", 2), ("TEE", 3), ("MUG", 1)))
    assert [line.location for line in placed.lines] == ["a-berlin", "b-hamburg", "b-hamburg"]

    shop.cancel(a_cancel())

    assert shop.stock.available("TEE", "a-berlin") == 2
    assert shop.stock.available("TEE", "b-hamburg") == 5
    assert shop.stock.available("MUG", "b-hamburg") == 1
    assert shop.stock.reserved == dict.fromkeys(shop.stock.rows, 0)


def test_cancelling_a_partially_backordered_order_releases_only_what_was_reserved() -> None:
    shop = Shop({("TEE", "berlin"): 5, ("MUG", "berlin"): 1})
    shop.place(an_order(("TEE", 2), order_id="ORD-0"))
    placed = shop.place(an_order(("TEE", 3), ("MUG", 4)))
    assert placed.status == "partially_backordered"
    shop.channels.posts.clear()

    shop.cancel(a_cancel())

    assert shop.level("TEE", "berlin").reserved == 2
    assert shop.level("MUG", "berlin").reserved == 0
    assert [payload["sku"] for _path, payload, _key in shop.channels.posts] == ["TEE"]


def test_cancelling_an_order_leaves_other_orders_reservations_alone() -> None:
    shop = Shop({("TEE", "berlin"): 10})
    shop.place(an_order(("TEE", 4), order_id="ORD-0"))
    shop.place(an_order(("TEE", 3)))

    shop.cancel(a_cancel())

    assert shop.level("TEE", "berlin").reserved == 4
    assert shop.order("ORD-0").status == "reserved"


def test_a_cancelled_line_is_never_allocated_when_stock_arrives_later() -> None:
    shop = Shop()
    shop.place(an_order(("TEE", 2)))
    shop.cancel(a_cancel())

    changed = shop.adjust(
        InventoryAdjustedV1.model_validate(
            {"sku": "TEE", "location": "berlin", "delta": 5, "reason": "receipt", "sequence": 1}
        )
    )

    assert isinstance(changed, StockChanged)
    assert changed.allocated_lines == ()
    assert shop.stock.available("TEE", "berlin") == 5
    assert shop.order("ORD-1").status == "cancelled"


@pytest.mark.parametrize("shipped", [1, 3], ids=["partially shipped", "fully shipped"])
def test_an_order_with_a_shipped_line_cannot_be_cancelled_and_nothing_changes(shipped: int) -> None:
    shop = Shop({("TEE", "berlin"): 5, ("MUG", "berlin"): 1})
    shop.place(an_order(("TEE", 3), ("MUG", 1)))
    shop.dispatch(a_dispatch("L1", shipped))
    before = shop.snapshot()

    with pytest.raises(PermanentError, match=r"cannot be cancelled: lines L1 have shipped \(use a return\)"):
        shop.cancel(a_cancel())

    assert shop.snapshot() == before


def test_a_cancel_for_an_order_not_seen_yet_is_retried_since_it_may_have_overtaken_the_order() -> None:
    shop = Shop({("TEE", "berlin"): 5})
    before = shop.snapshot()

    with pytest.raises(TransientError, match="ORD-9 is not known yet"):
        shop.cancel(a_cancel("ORD-9"))

    assert shop.snapshot() == before


def test_a_cancel_that_overtook_its_order_succeeds_once_the_order_has_arrived() -> None:
    shop = Shop({("TEE", "berlin"): 5})
    with pytest.raises(TransientError):
        shop.cancel(a_cancel())

    shop.place(an_order(("TEE", 2)))
    shop.cancel(a_cancel())

    assert shop.order("ORD-1").status == "cancelled"
    assert shop.stock.available("TEE", "berlin") == 5


def test_cancelling_twice_is_harmless() -> None:
    shop = Shop({("TEE", "berlin"): 10})
    shop.place(an_order(("TEE", 4), order_id="ORD-0"))
    shop.place(an_order(("TEE", 3)))
    shop.cancel(a_cancel())
    after_first = shop.snapshot()

    again = shop.cancel(a_cancel(reason="other"))

    assert again.status == "cancelled"
    assert shop.snapshot() == after_first
    assert shop.level("TEE", "berlin").reserved == 4


def test_stock_a_cancel_frees_serves_the_oldest_backordered_line_before_any_new_order() -> None:
    shop = Shop({("TEE", "berlin"): 3})
    shop.place(an_order(("TEE", 3), order_id="ORD-1"))
    shop.place(an_order(("TEE", 2), order_id="ORD-2"))
    assert shop.order("ORD-2").status == "backordered"

    shop.cancel(a_cancel("ORD-1"))
    shop.place(an_order(("TEE", 2), order_id="ORD-3"))

    assert shop.order("ORD-2").status == "reserved"
    assert shop.order("ORD-2").lines[0].location == "berlin"
    assert shop.order("ORD-3").status == "backordered", "the one unit left does not cover ORD-3"
    assert shop.level("TEE", "berlin").reserved == 2
    assert shop.channels.posts[-1][1] == {"sku": "TEE", "available": 1}, "availability after the cancel"


def test_a_cancel_locks_every_reserved_sku_at_once_sorted_and_gives_them_back_in_one_write() -> None:
    shop = Shop({("TEE", "berlin"): 5, ("MUG", "berlin"): 2, ("LAMP", "hamburg"): 1})
    shop.place(an_order(("TEE", 3), ("MUG", 2), ("LAMP", 1), ("TEE", 1)))
    shop.stock.locked.clear()
    shop.stock.saved_together.clear()

    shop.cancel(a_cancel())

    assert shop.stock.locked == [["LAMP", "MUG", "TEE"]]
    assert shop.stock.saved_together == [[("LAMP", "hamburg"), ("MUG", "berlin"), ("TEE", "berlin")]]
    assert shop.stock.reserved == {("TEE", "berlin"): 0, ("MUG", "berlin"): 0, ("LAMP", "hamburg"): 0}
