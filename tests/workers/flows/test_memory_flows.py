"""The six flows on the in-memory broker and SQLite: the SQL books behave as the handlers' fakes do."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from tests.support.envelopes import envelope, order_v2
from tests.support.fleet_run import FleetRun
from workers.store.tables import order_lines, orders, payments, returns, stock_levels
from workers.store.tables import prices as price_table


def send(fleet: FleetRun, contract: str, data: dict[str, Any], version: int = 1) -> None:
    fleet.publish(envelope(data, contract=contract, version=version), routing_key=contract)
    fleet.settle()


def rows(fleet: FleetRun, query: Any) -> list[dict[str, Any]]:
    with fleet.engine.connect() as connection:
        return [dict(row) for row in connection.execute(query).mappings()]


def level(fleet: FleetRun, sku: str, location: str) -> dict[str, Any]:
    [row] = rows(fleet, select(stock_levels).where(stock_levels.c.sku == sku, stock_levels.c.location == location))
    return row


def order_status(fleet: FleetRun, order_id: str) -> str:
    [row] = rows(fleet, select(orders.c.status).where(orders.c.order_id == order_id))
    return str(row["status"])


def test_an_order_goes_from_placed_through_partial_shipment_delivery_return_and_refund(fleet: FleetRun) -> None:
    fleet.publish(envelope(order_v2("ORD-1", [("TEE-RED-M", 3)])))
    fleet.settle()
    dispatched = {"order_id": "ORD-1", "location": "BER-1", "carrier": "DHL"}
    send(fleet, "shipment.dispatched", {**dispatched, "shipment_id": "S1", "lines": [{"line_id": "1", "quantity": 1}]})

    assert order_status(fleet, "ORD-1") == "partially_shipped"
    assert (level(fleet, "TEE-RED-M", "BER-1")["on_hand"], level(fleet, "TEE-RED-M", "BER-1")["reserved"]) == (39, 2)

    send(fleet, "shipment.dispatched", {**dispatched, "shipment_id": "S2", "lines": [{"line_id": "1", "quantity": 2}]})
    for shipment in ("S1", "S2"):
        send(
            fleet,
            "shipment.delivered",
            {"shipment_id": shipment, "order_id": "ORD-1", "delivered_at": "2026-11-24T10:00:00Z"},
        )
    assert order_status(fleet, "ORD-1") == "delivered"

    rma = {"rma_id": "R1", "order_id": "ORD-1", "location": "RET-1", "lines": [{"line_id": "1", "quantity": 2}]}
    send(fleet, "return.requested", rma)
    assert level(fleet, "TEE-RED-M", "RET-1")["return_pending"] == 2
    receipt = {"receipt_id": "RC1", "rma_id": "R1", "order_id": "ORD-1", "adjustment_minor": 100}
    send(fleet, "return.received", {**receipt, "lines": [{"line_id": "1", "quantity": 2, "condition": "damaged"}]})

    returned = level(fleet, "TEE-RED-M", "RET-1")
    assert (returned["on_hand"], returned["quarantined"], returned["return_pending"]) == (2, 2, 0)
    [rma_row] = rows(fleet, select(returns))
    assert (rma_row["status"], rma_row["refunded_minor"]) == ("received", 2 * 1999 - 100)
    [refund] = fleet.systems["payments"].applied.values()
    assert refund["amount_minor"] == 2 * 1999 - 100
    assert fleet.tally("dead_lettered", "returns") == 0


def test_stock_that_arrives_serves_the_oldest_backorder_first_and_pushes_availability(fleet: FleetRun) -> None:
    for order_id in ("ORD-OLD", "ORD-NEW"):
        fleet.publish(envelope(order_v2(order_id, [("SNEAKER-42", 2)])))
        fleet.settle()

    receipt = {"sku": "SNEAKER-42", "location": "BER-1", "delta": 3, "reason": "receipt", "sequence": 1}
    send(fleet, "inventory.adjusted", receipt)

    assert order_status(fleet, "ORD-OLD") == "reserved"
    assert order_status(fleet, "ORD-NEW") == "backordered"
    assert (level(fleet, "SNEAKER-42", "BER-1")["reserved"], level(fleet, "SNEAKER-42", "BER-1")["on_hand"]) == (2, 3)
    assert fleet.systems["channels"].applied["atp:inventory.adjusted:SNEAKER-42@BER-1#1:SNEAKER-42"] == {
        "sku": "SNEAKER-42",
        "available": 1,
    }


def test_a_count_below_what_is_reserved_sends_the_newest_reservation_back_to_backorder(fleet: FleetRun) -> None:
    for order_id in ("ORD-A", "ORD-B"):
        fleet.publish(envelope(order_v2(order_id, [("LAMP-ARC", 1)])))
        fleet.settle()
    send(fleet, "inventory.counted", {"sku": "LAMP-ARC", "location": "HAM-2", "on_hand": 2, "sequence": 1})
    assert order_status(fleet, "ORD-B") == "reserved"

    send(fleet, "inventory.counted", {"sku": "LAMP-ARC", "location": "HAM-2", "on_hand": 1, "sequence": 2})

    assert (order_status(fleet, "ORD-A"), order_status(fleet, "ORD-B")) == ("reserved", "backordered")
    [line] = rows(fleet, select(order_lines).where(order_lines.c.order_id == "ORD-B"))
    assert (line["status"], line["location"]) == ("backordered", None)
    assert level(fleet, "LAMP-ARC", "HAM-2")["reserved"] == 1


def test_an_older_sequence_or_price_is_counted_stale_and_changes_nothing(fleet: FleetRun) -> None:
    send(fleet, "inventory.counted", {"sku": "MUG-BLUE", "location": "BER-1", "on_hand": 7, "sequence": 9})
    send(fleet, "inventory.counted", {"sku": "MUG-BLUE", "location": "BER-1", "on_hand": 99, "sequence": 8})
    price = {"sku": "MUG-BLUE", "currency": "EUR", "amount_minor": 900}
    send(fleet, "price.changed", {**price, "effective_at": "2026-11-20T00:00:00+01:00"})
    send(fleet, "price.changed", {**price, "amount_minor": 1, "effective_at": "2026-11-19T22:00:00Z"})
    send(fleet, "price.changed", {**price, "amount_minor": 2, "effective_at": "2026-11-19T23:00:00Z"})

    assert level(fleet, "MUG-BLUE", "BER-1")["on_hand"] == 7
    assert level(fleet, "MUG-BLUE", "BER-1")["last_sequence"] == 9
    [stored] = rows(fleet, select(price_table))
    assert stored["amount_minor"] == 900
    assert (fleet.tally("stale", "inventory"), fleet.tally("stale", "catalog")) == (1, 1)
    assert fleet.tally("duplicate", "catalog") == 1, "the same instant in another time zone is the same change"
    assert (fleet.tally("processed", "inventory"), fleet.tally("dead_lettered", "inventory")) == (2, 0)
    assert len(fleet.systems["channels"].applied) == 2, "one availability push and one price; nothing for stale events"


def test_captures_add_up_and_one_beyond_the_authorization_is_dead_lettered_with_the_amounts(fleet: FleetRun) -> None:
    fleet.publish(envelope(order_v2("ORD-P", [("MUG-BLUE", 1)], unit_price_minor=5000)))
    fleet.settle()
    money = {"payment_id": "P1", "order_id": "ORD-P", "currency": "EUR"}
    send(fleet, "payment.authorized", {**money, "amount_minor": 5000})
    send(fleet, "payment.captured", {**money, "capture_id": "C1", "amount_minor": 3000})
    send(fleet, "payment.captured", {**money, "capture_id": "C2", "amount_minor": 2001})

    [payment] = rows(fleet, select(payments))
    assert (payment["captured_minor"], payment["status"]) == (3000, "captured")
    [dead] = fleet.dead_letters()
    assert (dead["stage"], dead["attempts"]) == ("handler", 1)
    assert "over the 5000 authorized" in dead["error_message"]
    assert dead["business_keys"] == {"payment_id": "P1", "order_id": "ORD-P"}
    assert list(fleet.erp.applied) == ["order-export:ORD-P", "payment-capture:C1"]
