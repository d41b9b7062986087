"""Stock adjustments and counts apply in sequence, keep commitments honest, serve backorders, and tell the channels."""

from __future__ import annotations

from typing import Any

import pytest

from contracts.inventory import InventoryAdjustedV1, InventoryCountedV1
from contracts.orders import OrderCreatedV2
from handlers.errors import PermanentError
from handlers.inventory import StockChanged
from handlers.outcomes import Stale
from handlers.stock import StockLevel
from tests.support.fakes import Shop


def an_order(*lines: tuple[str, int], order_id: str) -> OrderCreatedV2:
    return OrderCreatedV2.model_validate(
        {
            "order_id": order_id,
            "channel": "storefront",
            "customer": {"email": "ana@example.com"},
            "currency": "EUR",
            "lines": [
                {"line_id": f"L{n}", "sku": sku, "quantity": quantity, "unit_price_minor": 500}
                for n, (sku, quantity) in enumerate(lines, start=1)
            ],
            "total_minor": 500 * sum(quantity for _sku, quantity in lines),
        }
    )


def adjusted(
    delta: int, reason: str, sequence: int, *, sku: str = "TEE", location: str = "berlin"
) -> InventoryAdjustedV1:
    return InventoryAdjustedV1.model_validate(
        {"sku": sku, "location": location, "delta": delta, "reason": reason, "sequence": sequence}
    )


def counted(on_hand: int, sequence: int, *, sku: str = "TEE", location: str = "berlin") -> InventoryCountedV1:
    return InventoryCountedV1.model_validate(
        {"sku": sku, "location": location, "on_hand": on_hand, "sequence": sequence}
    )


def applied(outcome: StockChanged | Stale) -> StockChanged:
    assert isinstance(outcome, StockChanged), outcome
    return outcome


def shop_at(on_hand: int, *, sequence: int = 10, sku: str = "TEE", location: str = "berlin") -> Shop:
    """A shop whose one (sku, location) has `on_hand` units, last updated by `sequence`."""
    shop = Shop()
    shop.count(counted(on_hand, sequence, sku=sku, location=location))
    shop.channels.posts.clear()
    return shop


# Deltas and counts


def test_a_receipt_raises_stock_on_hand_and_available() -> None:
    shop = shop_at(5)

    changed = applied(shop.adjust(adjusted(24, "receipt", 11)))

    assert (changed.on_hand, changed.available) == (29, 29)
    assert shop.level("TEE", "berlin") == StockLevel("TEE", "berlin", on_hand=29, last_sequence=11)


@pytest.mark.parametrize("reason", ["sale", "damage", "cycle_count_correction"])
def test_a_sale_damage_or_negative_correction_lowers_stock_on_hand_and_available(reason: str) -> None:
    shop = shop_at(10)
    shop.place(an_order(("TEE", 3), order_id="ORD-1"))

    changed = applied(shop.adjust(adjusted(-4, reason, 11)))

    assert (changed.on_hand, changed.available) == (6, 3)
    assert shop.level("TEE", "berlin").reserved == 3


def test_a_positive_cycle_count_correction_raises_stock() -> None:
    shop = shop_at(10)

    assert applied(shop.adjust(adjusted(2, "cycle_count_correction", 11))).on_hand == 12


def test_a_count_sets_stock_on_hand_whatever_the_ledger_said() -> None:
    shop = shop_at(10)
    shop.place(an_order(("TEE", 2), order_id="ORD-1"))

    changed = applied(shop.count(counted(7, 11)))

    assert (changed.on_hand, changed.available) == (7, 5)
    assert shop.level("TEE", "berlin").last_sequence == 11


def test_the_first_event_for_a_sku_at_a_location_applies_whatever_its_sequence() -> None:
    shop = Shop()

    applied(shop.adjust(adjusted(3, "receipt", 1_000_000, location="munich")))

    assert shop.level("TEE", "munich").on_hand == 3


def test_sequences_are_per_sku_and_location() -> None:
    shop = shop_at(5, sequence=500)

    applied(shop.adjust(adjusted(1, "receipt", 1, location="hamburg")))
    applied(shop.adjust(adjusted(1, "receipt", 1, sku="MUG")))

    assert shop.level("TEE", "hamburg").on_hand == 1
    assert shop.level("MUG", "berlin").on_hand == 1


@pytest.mark.parametrize("sequence", [9, 10], ids=["older", "equal"])
@pytest.mark.parametrize("kind", ["adjusted", "counted"])
def test_an_event_not_newer_than_the_last_applied_one_is_stale_and_changes_nothing(kind: str, sequence: int) -> None:
    shop = shop_at(5, sequence=10)
    shop.place(an_order(("TEE", 2), order_id="ORD-1"))
    shop.place(an_order(("TEE", 9), order_id="ORD-2"))
    before = shop.snapshot()

    outcome = shop.adjust(adjusted(-5, "sale", sequence)) if kind == "adjusted" else shop.count(counted(40, sequence))

    assert isinstance(outcome, Stale)
    assert f"sequence {sequence} <= applied 10" in outcome.reason
    assert shop.snapshot() == before


def test_a_stale_event_stays_stale_after_newer_ones_have_applied() -> None:
    shop = shop_at(5, sequence=10)
    applied(shop.adjust(adjusted(1, "receipt", 12)))

    assert isinstance(shop.count(counted(100, 11)), Stale)
    assert shop.level("TEE", "berlin").on_hand == 6


def test_a_delta_taking_stock_below_zero_is_rejected_and_changes_nothing() -> None:
    shop = shop_at(3)
    shop.place(an_order(("TEE", 1), order_id="ORD-1"))
    before = shop.snapshot()

    with pytest.raises(PermanentError, match=r"TEE@berlin: on hand would become -1.*inventory\.counted"):
        shop.adjust(adjusted(-4, "sale", 11))

    assert shop.snapshot() == before


def test_a_negative_delta_at_a_location_never_stocked_is_rejected() -> None:
    shop = Shop()

    with pytest.raises(PermanentError):
        shop.adjust(adjusted(-1, "damage", 1, location="nowhere"))

    assert shop.snapshot()["stock"] == {}


def test_a_delta_to_exactly_zero_is_fine() -> None:
    shop = shop_at(3)

    assert applied(shop.adjust(adjusted(-3, "sale", 11))).on_hand == 0


# Stock shrinking below what is committed


def test_shrinking_below_reservations_takes_back_the_newest_orders_lines_first() -> None:
    shop = shop_at(6)
    for number in (1, 2, 3):
        shop.place(an_order(("TEE", 2), order_id=f"ORD-{number}"))

    changed = applied(shop.adjust(adjusted(-3, "damage", 11)))

    assert changed.unallocated_lines == (("ORD-3", "L1"), ("ORD-2", "L1"))
    assert [shop.order(f"ORD-{n}").status for n in (1, 2, 3)] == ["reserved", "backordered", "backordered"]
    assert [(line.status, line.location) for line in shop.order("ORD-3").lines] == [("backordered", None)]
    level = shop.level("TEE", "berlin")
    assert (level.on_hand, level.reserved, level.available) == (3, 2, 1)


def test_a_line_is_taken_back_whole_even_when_only_part_of_it_no_longer_fits() -> None:
    shop = shop_at(5)
    shop.place(an_order(("TEE", 5), order_id="ORD-1"))

    changed = applied(shop.count(counted(4, 11)))

    assert changed.unallocated_lines == (("ORD-1", "L1"),)
    assert shop.order("ORD-1").status == "backordered"
    assert (changed.on_hand, changed.available) == (4, 4)


def test_an_order_losing_one_of_its_lines_becomes_partially_backordered() -> None:
    shop = shop_at(2)
    shop.count(counted(1, 1, sku="MUG"))
    shop.place(an_order(("TEE", 2), ("MUG", 1), order_id="ORD-1"))

    applied(shop.count(counted(1, 11)))

    assert shop.order("ORD-1").status == "partially_backordered"
    assert [line.status for line in shop.order("ORD-1").lines] == ["backordered", "reserved"]


def test_shrinking_at_one_location_leaves_reservations_at_other_locations_alone() -> None:
    shop = shop_at(2, location="a-berlin")
    shop.count(counted(3, 1, location="b-hamburg"))
    shop.place(an_order(("TEE", 2), ("TEE", 3), order_id="ORD-1"))

    applied(shop.count(counted(0, 11, location="a-berlin")))

    lines = shop.order("ORD-1").lines
    assert [(line.status, line.location) for line in lines] == [("backordered", None), ("reserved", "b-hamburg")]
    assert shop.level("TEE", "b-hamburg").reserved == 3


def test_shrinking_with_spare_available_stock_takes_back_nothing() -> None:
    shop = shop_at(10)
    shop.place(an_order(("TEE", 4), order_id="ORD-1"))

    changed = applied(shop.adjust(adjusted(-6, "sale", 11)))

    assert changed.unallocated_lines == ()
    assert shop.order("ORD-1").status == "reserved"


def test_writing_off_quarantined_units_does_not_take_back_a_customers_reservation() -> None:
    shop = shop_at(10)
    shop.stock.save(StockLevel("TEE", "berlin", on_hand=10, quarantined=2, last_sequence=10))
    shop.place(an_order(("TEE", 8), order_id="ORD-1"))  # available is now 0

    shop.adjust(adjusted(-2, "damage", 11))  # the two damaged units are thrown away

    level = shop.level("TEE", "berlin")
    assert (level.on_hand, level.quarantined, level.reserved) == (8, 0, 8)
    assert shop.order("ORD-1").status == "reserved"


# Arriving stock serves backorders


def test_arriving_stock_serves_backordered_lines_oldest_order_first() -> None:
    shop = shop_at(0)
    for number in (1, 2, 3):
        shop.place(an_order(("TEE", 2), order_id=f"ORD-{number}"))

    changed = applied(shop.adjust(adjusted(5, "receipt", 11)))

    assert changed.allocated_lines == (("ORD-1", "L1"), ("ORD-2", "L1"))
    assert [shop.order(f"ORD-{n}").status for n in (1, 2, 3)] == ["reserved", "reserved", "backordered"]
    assert shop.order("ORD-1").lines[0].location == "berlin"
    level = shop.level("TEE", "berlin")
    assert (level.on_hand, level.reserved, level.available) == (5, 4, 1)


def test_a_backordered_line_too_large_for_what_arrived_waits_while_a_younger_smaller_one_goes_ahead() -> None:
    shop = shop_at(0)
    shop.place(an_order(("TEE", 4), order_id="ORD-1"))
    shop.place(an_order(("TEE", 2), order_id="ORD-2"))

    changed = applied(shop.adjust(adjusted(3, "receipt", 11)))

    assert changed.allocated_lines == (("ORD-2", "L1"),)
    assert shop.order("ORD-1").status == "backordered"
    assert shop.level("TEE", "berlin").reserved == 2


def test_a_backordered_line_is_reserved_whole_never_in_part() -> None:
    shop = shop_at(0)
    shop.place(an_order(("TEE", 4), order_id="ORD-1"))

    applied(shop.count(counted(3, 11)))

    assert shop.order("ORD-1").status == "backordered"
    assert shop.level("TEE", "berlin").reserved == 0


def test_a_partially_backordered_order_becomes_reserved_when_its_line_is_served() -> None:
    shop = shop_at(1, sku="MUG")
    shop.place(an_order(("MUG", 1), ("TEE", 2), order_id="ORD-1"))
    assert shop.order("ORD-1").status == "partially_backordered"

    applied(shop.adjust(adjusted(2, "receipt", 1, location="hamburg")))

    assert shop.order("ORD-1").status == "reserved"
    assert [line.location for line in shop.order("ORD-1").lines] == ["berlin", "hamburg"]


def test_arriving_stock_serves_only_its_own_sku() -> None:
    shop = shop_at(0)
    shop.place(an_order(("MUG", 1), order_id="ORD-1"))

    assert applied(shop.adjust(adjusted(5, "receipt", 11))).allocated_lines == ()
    assert shop.order("ORD-1").status == "backordered"


# Available-to-promise for the channels


def test_a_change_in_available_to_promise_is_posted_to_the_channels_summed_over_locations() -> None:
    shop = shop_at(3)
    shop.count(counted(4, 1, location="hamburg"))
    shop.channels.posts.clear()

    shop.adjust(adjusted(5, "receipt", 11))

    assert shop.channels.posts == [
        ("/availability", {"sku": "TEE", "available": 12}, "atp:inventory.adjusted:TEE@berlin#11:TEE")
    ]


def test_a_count_posts_availability_under_its_own_contract_name() -> None:
    shop = shop_at(3)

    shop.count(counted(1, 11))

    assert shop.channels.posts == [
        ("/availability", {"sku": "TEE", "available": 1}, "atp:inventory.counted:TEE@berlin#11:TEE")
    ]


def test_nothing_is_posted_to_the_channels_when_available_to_promise_did_not_change() -> None:
    shop = shop_at(3)

    applied(shop.count(counted(3, 11)))

    assert shop.channels.posts == []


def test_nothing_is_posted_when_arriving_stock_all_goes_to_backorders() -> None:
    shop = shop_at(0)
    shop.place(an_order(("TEE", 3), order_id="ORD-1"))
    shop.channels.posts.clear()

    changed = applied(shop.adjust(adjusted(3, "receipt", 11)))

    assert changed.allocated_lines == (("ORD-1", "L1"),)
    assert shop.channels.posts == []


def test_the_availability_key_depends_on_the_event_alone_so_a_redelivery_sends_the_same_one() -> None:
    event = adjusted(2, "receipt", 11)
    keys: list[Any] = []
    for on_hand in (3, 30):
        shop = shop_at(on_hand)
        shop.adjust(event)
        keys.append([key for _path, _payload, key in shop.channels.posts])

    assert keys == [["atp:inventory.adjusted:TEE@berlin#11:TEE"]] * 2


def test_a_stale_event_posts_nothing() -> None:
    shop = shop_at(3)

    shop.adjust(adjusted(5, "receipt", 10))

    assert shop.channels.posts == []
