"""Returns: an RMA against delivered units, then a receipt whose condition decides disposition and the refund."""

from __future__ import annotations

import json
from typing import Any

import pytest

from contracts.errors import ContractViolation
from contracts.fulfillment import ShipmentDeliveredV1, ShipmentDispatchedV1
from contracts.inventory import InventoryCountedV1
from contracts.orders import OrderCreatedV2
from contracts.returns import RETURN_REQUESTED, ReturnReceivedV1, ReturnRequestedV1
from handlers.errors import PermanentError, TransientError
from handlers.returns import Return, ReturnLine
from tests.support.fakes import Shop

HUB = "returns-hub"


def an_order(*lines: tuple[str, int, int], order_id: str = "ORD-1", currency: str = "EUR") -> OrderCreatedV2:
    """Lines are (sku, quantity, unit price in minor units)."""
    return OrderCreatedV2.model_validate(
        {
            "order_id": order_id,
            "channel": "storefront",
            "customer": {"customer_id": "C-1", "email": "ana@example.com"},
            "currency": currency,
            "lines": [
                {"line_id": f"L{n}", "sku": sku, "quantity": quantity, "unit_price_minor": price}
                for n, (sku, quantity, price) in enumerate(lines, start=1)
            ],
            "total_minor": sum(quantity * price for _sku, quantity, price in lines),
        }
    )


def dispatched(shipment_id: str, *lines: tuple[str, int], location: str = "berlin") -> ShipmentDispatchedV1:
    return ShipmentDispatchedV1.model_validate(
        {
            "shipment_id": shipment_id,
            "order_id": "ORD-1",
            "location": location,
            "carrier": "DHL",
            "lines": [{"line_id": line_id, "quantity": quantity} for line_id, quantity in lines],
        }
    )


def delivered(shipment_id: str, order_id: str = "ORD-1") -> ShipmentDeliveredV1:
    return ShipmentDeliveredV1.model_validate(
        {"shipment_id": shipment_id, "order_id": order_id, "delivered_at": "2026-11-24T14:03:00Z"}
    )


def requested(
    rma_id: str, *lines: tuple[str, int], location: str = HUB, order_id: str = "ORD-1", reason: str | None = None
) -> ReturnRequestedV1:
    return ReturnRequestedV1.model_validate(
        {
            "rma_id": rma_id,
            "order_id": order_id,
            "location": location,
            "lines": [{"line_id": line_id, "quantity": quantity, "reason": reason} for line_id, quantity in lines],
        }
    )


def received(
    receipt_id: str, *lines: tuple[str, int, str], rma_id: str = "RMA-1", order_id: str = "ORD-1", adjustment: int = 0
) -> ReturnReceivedV1:
    return ReturnReceivedV1.model_validate(
        {
            "receipt_id": receipt_id,
            "rma_id": rma_id,
            "order_id": order_id,
            "lines": [
                {"line_id": line_id, "quantity": quantity, "condition": condition}
                for line_id, quantity, condition in lines
            ],
            "adjustment_minor": adjustment,
        }
    )


def shop_with_delivered_order() -> Shop:
    """ORD-1: L1 = 3 TEE at 1999, L2 = 2 MUG at 850, all shipped from berlin and delivered."""
    shop = Shop({("TEE", "berlin"): 10, ("MUG", "berlin"): 10})
    shop.place(an_order(("TEE", 3, 1999), ("MUG", 2, 850)))
    shop.dispatch(dispatched("SHP-1", ("L1", 3), ("L2", 2)))
    shop.deliver(delivered("SHP-1"))
    return shop


# Requests


def test_a_return_of_delivered_units_is_kept_and_counts_as_return_pending_at_the_rma_location() -> None:
    shop = shop_with_delivered_order()

    rma = shop.request_return(requested("RMA-1", ("L1", 2), ("L2", 1)))

    assert rma == Return(
        rma_id="RMA-1",
        order_id="ORD-1",
        location=HUB,
        lines=[ReturnLine("L1", "TEE", requested=2), ReturnLine("L2", "MUG", requested=1)],
    )
    assert shop.returns.get("RMA-1") == rma
    assert shop.level("TEE", HUB).return_pending == 2
    assert shop.level("MUG", HUB).return_pending == 1
    assert shop.level("TEE", "berlin").return_pending == 0
    assert [line.return_requested for line in shop.order("ORD-1").lines] == [2, 1]


def test_a_return_request_leaves_on_hand_and_available_alone_until_the_units_arrive() -> None:
    shop = shop_with_delivered_order()

    shop.request_return(requested("RMA-1", ("L1", 3), location="berlin"))

    level = shop.level("TEE", "berlin")
    assert (level.on_hand, level.available, level.return_pending) == (7, 7, 3)


def test_asking_back_more_than_was_ordered_is_rejected_and_changes_nothing() -> None:
    shop = shop_with_delivered_order()
    before = shop.snapshot()

    with pytest.raises(PermanentError, match="4 units asked back in all, but only 3 ordered"):
        shop.request_return(requested("RMA-1", ("L1", 4)))

    assert shop.snapshot() == before


def test_the_quantity_of_a_line_across_all_its_rmas_is_bounded_by_what_was_ordered() -> None:
    shop = shop_with_delivered_order()
    shop.request_return(requested("RMA-1", ("L1", 2)))
    before = shop.snapshot()

    with pytest.raises(PermanentError, match="4 units asked back in all, but only 3 ordered"):
        shop.request_return(requested("RMA-2", ("L2", 1), ("L1", 2)))

    assert shop.snapshot() == before
    shop.request_return(requested("RMA-3", ("L1", 1)))
    assert shop.level("TEE", HUB).return_pending == 3


def test_asking_back_units_shipped_but_not_yet_delivered_waits_for_the_delivery() -> None:
    shop = Shop({("TEE", "berlin"): 10})
    shop.place(an_order(("TEE", 3, 1999)))
    shop.dispatch(dispatched("SHP-1", ("L1", 2)))
    shop.deliver(delivered("SHP-1"))
    shop.dispatch(dispatched("SHP-2", ("L1", 1)))
    before = shop.snapshot()

    with pytest.raises(TransientError, match="3 units asked back, 2 delivered so far: waiting for the delivery"):
        shop.request_return(requested("RMA-1", ("L1", 3)))
    assert shop.snapshot() == before

    shop.deliver(delivered("SHP-2"))
    shop.request_return(requested("RMA-1", ("L1", 3)))
    assert shop.level("TEE", HUB).return_pending == 3


def test_asking_back_units_not_shipped_yet_waits_for_the_dispatch_and_delivery() -> None:
    shop = Shop({("TEE", "berlin"): 10})
    shop.place(an_order(("TEE", 3, 1999)))
    before = shop.snapshot()

    with pytest.raises(TransientError, match="1 units asked back, 0 delivered so far"):
        shop.request_return(requested("RMA-1", ("L1", 1)))

    assert shop.snapshot() == before


def test_a_return_for_a_line_the_order_does_not_have_is_rejected() -> None:
    shop = shop_with_delivered_order()

    with pytest.raises(PermanentError, match="ORD-1 has no line L9"):
        shop.request_return(requested("RMA-1", ("L9", 1)))


def test_a_return_for_an_order_not_seen_yet_is_retried() -> None:
    shop = Shop()

    with pytest.raises(TransientError, match="return arrived before its order"):
        shop.request_return(requested("RMA-1", ("L1", 1)))


# Receipts


def test_sellable_units_received_join_on_hand_and_available_stock_and_leave_return_pending() -> None:
    shop = shop_with_delivered_order()
    shop.request_return(requested("RMA-1", ("L1", 2)))

    rma = shop.receive_return(received("RCV-1", ("L1", 2, "sellable")))

    level = shop.level("TEE", HUB)
    assert (level.on_hand, level.available, level.quarantined, level.return_pending) == (2, 2, 0, 0)
    assert (rma.lines[0].received, rma.lines[0].sellable, rma.lines[0].damaged) == (2, 2, 0)
    assert rma.status == "received"


def test_damaged_units_received_join_on_hand_but_are_quarantined_and_not_available() -> None:
    shop = shop_with_delivered_order()
    shop.request_return(requested("RMA-1", ("L1", 2), location="berlin"))
    available_before = shop.stock.available("TEE", "berlin")

    rma = shop.receive_return(received("RCV-1", ("L1", 2, "damaged")))

    level = shop.level("TEE", "berlin")
    assert (level.on_hand, level.quarantined, level.return_pending) == (9, 2, 0)
    assert level.available == available_before
    assert (rma.lines[0].sellable, rma.lines[0].damaged) == (0, 2)


def test_an_rma_received_in_parts_is_partially_received_until_every_unit_has_arrived() -> None:
    shop = shop_with_delivered_order()
    shop.request_return(requested("RMA-1", ("L1", 3), ("L2", 2)))

    first = shop.receive_return(received("RCV-1", ("L1", 1, "sellable"), ("L2", 2, "sellable")))
    second = shop.receive_return(received("RCV-2", ("L1", 2, "damaged")))

    assert (first.status, second.status) == ("partially_received", "received")
    assert second.receipts == ["RCV-1", "RCV-2"]
    level = shop.level("TEE", HUB)
    assert (level.on_hand, level.quarantined, level.available, level.return_pending) == (3, 2, 1, 0)


def test_receiving_more_than_the_rma_still_expects_is_rejected_and_changes_nothing() -> None:
    shop = shop_with_delivered_order()
    shop.request_return(requested("RMA-1", ("L1", 2), ("L2", 1)))
    shop.receive_return(received("RCV-1", ("L1", 1, "sellable")))
    before = shop.snapshot()

    with pytest.raises(PermanentError, match="receiving 2 more than the 1 still expected"):
        shop.receive_return(received("RCV-2", ("L2", 1, "sellable"), ("L1", 2, "sellable")))

    assert shop.snapshot() == before


def test_receiving_a_line_the_rma_does_not_cover_is_rejected() -> None:
    shop = shop_with_delivered_order()
    shop.request_return(requested("RMA-1", ("L1", 1)))

    with pytest.raises(PermanentError, match="RMA-1 does not cover line L2"):
        shop.receive_return(received("RCV-1", ("L2", 1, "sellable")))


def test_a_receipt_that_arrives_before_its_request_is_retried_and_changes_nothing() -> None:
    shop = shop_with_delivered_order()
    before = shop.snapshot()

    with pytest.raises(TransientError, match="receipt arrived before the request"):
        shop.receive_return(received("RCV-1", ("L1", 1, "sellable")))

    assert shop.snapshot() == before


def test_a_receipt_naming_another_order_than_its_rma_is_rejected() -> None:
    shop = shop_with_delivered_order()
    shop.request_return(requested("RMA-1", ("L1", 1)))
    before = shop.snapshot()

    with pytest.raises(PermanentError, match="RMA-1 belongs to order ORD-1, not ORD-2"):
        shop.receive_return(received("RCV-1", ("L1", 1, "sellable"), order_id="ORD-2"))

    assert shop.snapshot() == before


# Refunds


def test_a_receipt_asks_the_payments_system_for_the_price_of_the_units_less_the_adjustment() -> None:
    shop = shop_with_delivered_order()
    shop.request_return(requested("RMA-1", ("L1", 2), ("L2", 2)))

    rma = shop.receive_return(received("RCV-1", ("L1", 2, "sellable"), ("L2", 1, "damaged"), adjustment=500))

    gross = 2 * 1999 + 1 * 850
    assert rma.refunded_minor == gross - 500
    assert shop.payments.posts == [
        (
            "/refunds",
            {
                "rma_id": "RMA-1",
                "receipt_id": "RCV-1",
                "order_id": "ORD-1",
                "amount_minor": gross - 500,
                "currency": "EUR",
                "adjustment_minor": 500,
            },
            "return-refund:RCV-1",
        )
    ]


def test_each_receipt_of_an_rma_is_refunded_under_its_own_key() -> None:
    shop = shop_with_delivered_order()
    shop.request_return(requested("RMA-1", ("L1", 3)))

    shop.receive_return(received("RCV-1", ("L1", 1, "sellable")))
    rma = shop.receive_return(received("RCV-2", ("L1", 2, "sellable"), adjustment=100))

    assert [(payload["amount_minor"], key) for _path, payload, key in shop.payments.posts] == [
        (1999, "return-refund:RCV-1"),
        (2 * 1999 - 100, "return-refund:RCV-2"),
    ]
    assert rma.refunded_minor == 3 * 1999 - 100


def test_an_adjustment_equal_to_the_price_refunds_nothing_but_the_units_still_come_back() -> None:
    shop = shop_with_delivered_order()
    shop.request_return(requested("RMA-1", ("L2", 1)))

    shop.receive_return(received("RCV-1", ("L2", 1, "damaged"), adjustment=850))

    assert shop.payments.posts[0][1]["amount_minor"] == 0
    assert shop.level("MUG", HUB).quarantined == 1


def test_an_adjustment_larger_than_the_refund_is_rejected_and_changes_nothing() -> None:
    shop = shop_with_delivered_order()
    shop.request_return(requested("RMA-1", ("L2", 1)))
    before = shop.snapshot()

    with pytest.raises(PermanentError, match="adjustment 851 exceeds the 850 being refunded"):
        shop.receive_return(received("RCV-1", ("L2", 1, "damaged"), adjustment=851))

    assert shop.snapshot() == before


def test_a_refund_is_requested_in_the_orders_currency_in_its_minor_units() -> None:
    shop = Shop({("TEE", "tokyo"): 5})
    shop.place(an_order(("TEE", 2, 3200), currency="JPY"))
    shop.dispatch(dispatched("SHP-1", ("L1", 2), location="tokyo"))
    shop.deliver(delivered("SHP-1"))
    shop.request_return(requested("RMA-1", ("L1", 1), location="tokyo"))

    shop.receive_return(received("RCV-1", ("L1", 1, "sellable"), adjustment=200))

    payload = shop.payments.posts[0][1]
    assert (payload["amount_minor"], payload["currency"]) == (3000, "JPY")


# Localized text


def test_localized_text_survives_from_the_wire_into_the_stock_book_and_the_refund() -> None:
    shop = shop_with_delivered_order()
    wire: dict[str, Any] = json.loads(
        json.dumps(
            {
                "rma_id": "RMA-2026/11#1",
                "order_id": "ORD-1",
                "location": "koeln-ruecklager",
                "lines": [{"line_id": "L1", "quantity": 1, "reason": "zu groß — サイズが大きい 👕"}],
            },
            ensure_ascii=False,
        )
    )
    request = ReturnRequestedV1.model_validate(wire)
    assert request.lines[0].reason == "zu groß — サイズが大きい 👕"

    shop.request_return(request)
    shop.receive_return(received("RCV-1/a", ("L1", 1, "sellable"), rma_id="RMA-2026/11#1"))

    assert shop.level("TEE", "koeln-ruecklager").on_hand == 1
    _path, payload, key = shop.payments.posts[0]
    assert payload["rma_id"] == "RMA-2026/11#1"
    assert key == "return-refund:RCV-1/a"


def test_identifiers_beyond_visible_ascii_are_refused_by_the_contract_with_their_field_path() -> None:
    """Text may be in any script; identifiers travel into URLs and headers, so they are visible ASCII."""
    wire = {
        "rma_id": "RMA-Ü-返品-1",
        "order_id": "ORD-1",
        "location": "Köln-Rücklager",
        "lines": [{"line_id": "L1", "quantity": 1}],
    }
    with pytest.raises(ContractViolation) as refused:
        RETURN_REQUESTED.parse(1, wire)
    assert refused.value.field_paths == ("data.rma_id", "data.location")


def test_sellable_units_back_in_stock_serve_a_backordered_line_there_and_are_announced_to_the_channels() -> None:
    shop = shop_with_delivered_order()
    shop.count(InventoryCountedV1.model_validate({"sku": "TEE", "location": "berlin", "on_hand": 0, "sequence": 1}))
    shop.place(an_order(("TEE", 1, 1999), order_id="ORD-3"))
    assert shop.order("ORD-3").status == "backordered"
    shop.request_return(requested("RMA-1", ("L1", 2)))

    shop.receive_return(received("RCV-1", ("L1", 2, "sellable")))

    assert shop.order("ORD-3").status == "reserved"
    assert shop.order("ORD-3").lines[0].location == HUB
    assert shop.level("TEE", HUB).available == 1
    path, payload, key = shop.channels.posts[-1]
    assert (path, payload, key) == ("/availability", {"sku": "TEE", "available": 1}, "atp:return.received:RCV-1:TEE")


def test_damaged_units_back_in_stock_serve_no_backorder_and_announce_nothing() -> None:
    shop = shop_with_delivered_order()
    shop.count(InventoryCountedV1.model_validate({"sku": "TEE", "location": "berlin", "on_hand": 0, "sequence": 1}))
    shop.place(an_order(("TEE", 1, 1999), order_id="ORD-3"))
    shop.request_return(requested("RMA-1", ("L1", 1)))
    posts_before = len(shop.channels.posts)

    shop.receive_return(received("RCV-1", ("L1", 1, "damaged")))

    assert shop.order("ORD-3").status == "backordered"
    assert len(shop.channels.posts) == posts_before
