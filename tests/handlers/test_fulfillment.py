"""Shipments take stock off the shelf line by line, in parts and from several locations; deliveries complete orders."""

from __future__ import annotations

import pytest

from contracts.fulfillment import ShipmentDeliveredV1, ShipmentDispatchedV1
from contracts.orders import OrderCancelledV1, OrderCreatedV2
from handlers.errors import PermanentError, TransientError
from handlers.fulfillment import Shipment
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


def dispatched(
    shipment_id: str, *lines: tuple[str, int], location: str = "berlin", order_id: str = "ORD-1"
) -> ShipmentDispatchedV1:
    return ShipmentDispatchedV1.model_validate(
        {
            "shipment_id": shipment_id,
            "order_id": order_id,
            "location": location,
            "carrier": "DHL",
            "tracking_number": f"TRK-{shipment_id}",
            "lines": [{"line_id": line_id, "quantity": quantity} for line_id, quantity in lines],
        }
    )


def delivered(shipment_id: str, order_id: str = "ORD-1") -> ShipmentDeliveredV1:
    return ShipmentDeliveredV1.model_validate(
        {"shipment_id": shipment_id, "order_id": order_id, "delivered_at": "2026-11-24T14:03:00+01:00"}
    )


def shop_with_order(*lines: tuple[str, int], on_hand: dict[tuple[str, str], int] | None = None) -> Shop:
    shop = Shop(on_hand or {("TEE", "berlin"): 10, ("MUG", "berlin"): 10})
    shop.place(an_order(*lines))
    return shop


# Dispatch


def test_a_partial_shipment_takes_its_quantity_off_on_hand_and_reserved_and_the_order_is_partially_shipped() -> None:
    shop = shop_with_order(("TEE", 5))

    order = shop.dispatch(dispatched("SHP-1", ("L1", 2)))

    assert order.status == "partially_shipped"
    line = order.lines[0]
    assert (line.status, line.location, line.shipped, line.unshipped) == ("reserved", "berlin", 2, 3)
    level = shop.level("TEE", "berlin")
    assert (level.on_hand, level.reserved, level.available) == (8, 3, 5)


def test_shipping_every_unit_marks_the_lines_and_the_order_shipped() -> None:
    shop = shop_with_order(("TEE", 5), ("MUG", 1))

    order = shop.dispatch(dispatched("SHP-1", ("L1", 5), ("L2", 1)))

    assert order.status == "shipped"
    assert [line.status for line in order.lines] == ["shipped", "shipped"]
    assert shop.level("TEE", "berlin").reserved == 0
    assert shop.level("MUG", "berlin").on_hand == 9


def test_partial_shipments_that_add_up_to_the_order_ship_it() -> None:
    shop = shop_with_order(("TEE", 5))

    shop.dispatch(dispatched("SHP-1", ("L1", 2)))
    order = shop.dispatch(dispatched("SHP-2", ("L1", 3)))

    assert order.status == "shipped"
    assert shop.level("TEE", "berlin").on_hand == 5
    assert shop.level("TEE", "berlin").reserved == 0


def test_a_split_order_ships_each_line_from_the_location_it_is_reserved_at() -> None:
    shop = shop_with_order(("TEE", 2), ("MUG", 1), on_hand={("TEE", "a-berlin"): 2, ("MUG", "b-hamburg"): 4})

    after_first = shop.dispatch(dispatched("SHP-1", ("L1", 2), location="a-berlin"))
    after_second = shop.dispatch(dispatched("SHP-2", ("L2", 1), location="b-hamburg"))

    assert (after_first.status, after_second.status) == ("partially_shipped", "shipped")
    assert shop.level("TEE", "a-berlin").on_hand == 0
    assert (shop.level("MUG", "b-hamburg").on_hand, shop.level("MUG", "b-hamburg").reserved) == (3, 0)


def test_the_shipment_is_kept_with_its_lines_and_tracking() -> None:
    shop = shop_with_order(("TEE", 5), ("MUG", 2))

    shop.dispatch(dispatched("SHP-1", ("L1", 2), ("L2", 1)))

    assert shop.shipments.get("SHP-1") == Shipment(
        shipment_id="SHP-1",
        order_id="ORD-1",
        location="berlin",
        carrier="DHL",
        tracking_number="TRK-SHP-1",
        lines=[("L1", 2), ("L2", 1)],
    )


def test_the_customer_is_notified_of_a_dispatch_keyed_by_the_shipment_id() -> None:
    shop = shop_with_order(("TEE", 5))

    shop.dispatch(dispatched("SHP-1", ("L1", 2)))

    assert shop.notify.posts == [
        (
            "/notifications",
            {
                "template": "shipment_dispatched",
                "order_id": "ORD-1",
                "customer_id": "C-1",
                "shipment_id": "SHP-1",
                "carrier": "DHL",
                "tracking_number": "TRK-SHP-1",
                "order_status": "partially_shipped",
            },
            "notify:shipment-dispatched:SHP-1",
        )
    ]


def test_a_dispatch_does_not_change_what_the_channels_may_sell() -> None:
    shop = shop_with_order(("TEE", 5))
    available = shop.stock.available("TEE", "berlin")

    shop.dispatch(dispatched("SHP-1", ("L1", 5)))

    assert shop.stock.available("TEE", "berlin") == available


# Dispatch rejections


@pytest.mark.parametrize(
    ("shipped", "match"),
    [
        (dispatched("SHP-9", ("L1", 1), location="hamburg"), "reserved at berlin, but shipment SHP-9 left hamburg"),
        (dispatched("SHP-9", ("L7", 1)), "has no line L7"),
        (dispatched("SHP-9", ("L1", 4)), "shipping 4 but only 3 of 5 are unshipped"),
        (dispatched("SHP-9", ("L2", 1), ("L1", 4)), "shipping 4 but only 3 of 5 are unshipped"),
    ],
    ids=["wrong location", "unknown line", "over-shipping", "a bad line among good ones"],
)
def test_a_shipment_that_breaks_a_rule_is_rejected_and_changes_nothing(
    shipped: ShipmentDispatchedV1, match: str
) -> None:
    shop = shop_with_order(("TEE", 5), ("MUG", 1))
    shop.dispatch(dispatched("SHP-1", ("L1", 2)))
    before = shop.snapshot()

    with pytest.raises(PermanentError, match=match):
        shop.dispatch(shipped)

    assert shop.snapshot() == before


def test_shipping_a_line_that_has_fully_shipped_again_is_rejected() -> None:
    shop = shop_with_order(("TEE", 2))
    shop.dispatch(dispatched("SHP-1", ("L1", 2)))

    with pytest.raises(PermanentError, match="only 0 of 2 are unshipped"):
        shop.dispatch(dispatched("SHP-2", ("L1", 1)))


def test_a_backordered_line_is_retried_since_stock_may_be_arriving() -> None:
    shop = shop_with_order(("TEE", 5), ("MUG", 20))
    before = shop.snapshot()

    with pytest.raises(TransientError, match="line L2 of order ORD-1 is backordered"):
        shop.dispatch(dispatched("SHP-1", ("L1", 1), ("L2", 1)))

    assert shop.snapshot() == before


def test_a_dispatch_that_arrives_before_its_order_is_retried() -> None:
    shop = Shop({("TEE", "berlin"): 10})

    with pytest.raises(TransientError, match="dispatch arrived before its order"):
        shop.dispatch(dispatched("SHP-1", ("L1", 1)))

    assert shop.snapshot()["shipments"] == {}


def test_a_dispatch_for_a_cancelled_order_is_rejected_and_changes_nothing() -> None:
    shop = shop_with_order(("TEE", 5))
    shop.cancel(OrderCancelledV1.model_validate({"order_id": "ORD-1", "reason": "fraud"}))
    before = shop.snapshot()

    with pytest.raises(PermanentError, match="ORD-1 is cancelled"):
        shop.dispatch(dispatched("SHP-1", ("L1", 1)))

    assert shop.snapshot() == before


# Delivery


def test_an_order_is_delivered_only_when_every_line_has_been_delivered() -> None:
    shop = shop_with_order(("TEE", 5), ("MUG", 1))
    shop.dispatch(dispatched("SHP-1", ("L1", 5)))
    shop.dispatch(dispatched("SHP-2", ("L2", 1)))

    after_first = shop.deliver(delivered("SHP-1"))
    assert after_first.status == "shipped"
    assert [line.delivered for line in after_first.lines] == [5, 0]

    after_second = shop.deliver(delivered("SHP-2"))
    assert after_second.status == "delivered"
    assert shop.order("ORD-1").status == "delivered"


def test_delivering_a_partial_shipment_leaves_the_order_partially_shipped() -> None:
    shop = shop_with_order(("TEE", 5))
    shop.dispatch(dispatched("SHP-1", ("L1", 2)))

    order = shop.deliver(delivered("SHP-1"))

    assert order.status == "partially_shipped"
    assert order.lines[0].delivered == 2


def test_a_delivered_shipment_records_when_it_arrived() -> None:
    shop = shop_with_order(("TEE", 1))
    shop.dispatch(dispatched("SHP-1", ("L1", 1)))

    shop.deliver(delivered("SHP-1"))

    shipment = shop.shipments.get("SHP-1")
    assert shipment is not None
    assert shipment.status == "delivered"
    assert shipment.delivered_at is not None
    assert shipment.delivered_at.isoformat() == "2026-11-24T14:03:00+01:00"


def test_the_customer_is_notified_of_a_delivery_keyed_by_the_shipment_id() -> None:
    shop = shop_with_order(("TEE", 1))
    shop.dispatch(dispatched("SHP-1", ("L1", 1)))
    shop.notify.posts.clear()

    shop.deliver(delivered("SHP-1"))

    assert shop.notify.posts == [
        (
            "/notifications",
            {
                "template": "shipment_delivered",
                "order_id": "ORD-1",
                "customer_id": "C-1",
                "shipment_id": "SHP-1",
                "order_status": "delivered",
            },
            "notify:shipment-delivered:SHP-1",
        )
    ]


def test_a_delivery_that_arrives_before_its_dispatch_is_retried() -> None:
    shop = shop_with_order(("TEE", 1))
    before = shop.snapshot()

    with pytest.raises(TransientError, match="delivery arrived before its dispatch"):
        shop.deliver(delivered("SHP-1"))

    assert shop.snapshot() == before


def test_a_delivery_that_names_another_order_than_its_shipment_is_rejected() -> None:
    shop = shop_with_order(("TEE", 1))
    shop.dispatch(dispatched("SHP-1", ("L1", 1)))
    before = shop.snapshot()

    with pytest.raises(PermanentError, match="SHP-1 belongs to order ORD-1, not ORD-2"):
        shop.deliver(delivered("SHP-1", order_id="ORD-2"))

    assert shop.snapshot() == before


def test_a_second_delivery_of_a_delivered_shipment_changes_nothing_and_notifies_no_one() -> None:
    shop = shop_with_order(("TEE", 2))
    shop.dispatch(dispatched("SHP-1", ("L1", 2)))
    shop.deliver(delivered("SHP-1"))
    before = shop.snapshot()

    order = shop.deliver(delivered("SHP-1"))

    assert order.status == "delivered"
    assert shop.snapshot() == before
