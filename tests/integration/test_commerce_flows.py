"""The edge cases of a real order-to-cash and returns cycle, each on RabbitMQ, PostgreSQL and the HTTP fakes.

Every step is published as a plain envelope and awaited until the fleet has handled it, so each
test reads like the day of one order; the assertions are on the stored rows and on the requests
the downstream systems received (path, Idempotency-Key, body).
"""

from __future__ import annotations

import unicodedata
from typing import Any

import pytest

from tests.integration.conftest import ApplyEvent, Database, Emit, FakeErp, StartWorker, Store, WaitFor
from tests.support.integration import Metrics

pytestmark = pytest.mark.integration

DELIVERED_AT = "2026-11-24T14:03:00Z"


def order(
    order_id: str,
    lines: list[tuple[str, str, int, int]],
    *,
    currency: str = "EUR",
    channel: str = "storefront",
    customer_id: str | None = None,
    email: str | None = None,
    tax_exempt: bool | None = None,
) -> dict[str, Any]:
    """An order.created v2 payload; `lines` are (line_id, sku, quantity, unit price in minor units)."""
    data: dict[str, Any] = {
        "order_id": order_id,
        "channel": channel,
        "customer": {
            "customer_id": customer_id or f"C-{order_id}",
            "email": email or f"{order_id.lower()}@example.com",
            "name": "Zoë Ångström",
        },
        "currency": currency,
        "lines": [
            {"line_id": line_id, "sku": sku, "quantity": qty, "unit_price_minor": price}
            for line_id, sku, qty, price in lines
        ],
        "total_minor": sum(qty * price for _, _, qty, price in lines),
    }
    if tax_exempt is not None:
        data["tax_exempt"] = tax_exempt
    return data


def dispatch(shipment_id: str, order_id: str, location: str, lines: list[tuple[str, int]]) -> dict[str, Any]:
    return {
        "shipment_id": shipment_id,
        "order_id": order_id,
        "location": location,
        "carrier": "DHL",
        "tracking_number": f"TRK-{shipment_id}",
        "lines": [{"line_id": line_id, "quantity": qty} for line_id, qty in lines],
    }


def delivery(shipment_id: str, order_id: str) -> dict[str, Any]:
    return {"shipment_id": shipment_id, "order_id": order_id, "delivered_at": DELIVERED_AT}


def paid(kind: str, operation_id: str, payment_id: str, order_id: str, amount: int, currency: str) -> dict[str, Any]:
    """A payment.captured (kind capture) or payment.refunded (kind refund) payload."""
    return {
        f"{kind}_id": operation_id,
        "payment_id": payment_id,
        "order_id": order_id,
        "amount_minor": amount,
        "currency": currency,
    }


def authorization(payment_id: str, order_id: str, amount: int, currency: str = "EUR") -> dict[str, Any]:
    return {"payment_id": payment_id, "order_id": order_id, "amount_minor": amount, "currency": currency}


def requests_to(fake_erp: FakeErp, path: str, key_prefix: str = "") -> list[tuple[str | None, Any]]:
    """(Idempotency-Key, body) of every request the fake received at `path` with that key prefix, in arrival order.

    `path` is the fake's full path: the ERP answers at its root, the other systems under their mounts
    (conftest.OTHER_SYSTEMS), e.g. the payment gateway's refunds at `/payment-gateway/refunds`.
    """
    return [
        (r.idempotency_key, r.body)
        for r in fake_erp.requests
        if r.path == path and (r.idempotency_key or "").startswith(key_prefix)
    ]


def test_a_captured_payment_can_be_refunded_in_parts_and_the_erp_gets_every_capture_and_refund(
    worker: StartWorker, apply_event: ApplyEvent, database: Database, store: Store, fake_erp: FakeErp
) -> None:
    worker()
    database.seed_stock("TEE-RED-M", "BER-1", 5)
    apply_event("order.created", order("ORD-R1", [("1", "TEE-RED-M", 2, 1999)]))
    apply_event("payment.authorized", authorization("PAY-R1", "ORD-R1", 3998))

    apply_event("payment.captured", paid("capture", "CAP-R1", "PAY-R1", "ORD-R1", 3998, "EUR"))
    apply_event("payment.refunded", paid("refund", "REF-R1", "PAY-R1", "ORD-R1", 1000, "EUR"))

    payment = store.payment("PAY-R1")
    assert (payment["captured_minor"], payment["refunded_minor"], payment["status"]) == (3998, 1000, "captured")

    apply_event("payment.refunded", paid("refund", "REF-R2", "PAY-R1", "ORD-R1", 2998, "EUR"))

    payment = store.payment("PAY-R1")
    assert (payment["authorized_minor"], payment["captured_minor"], payment["refunded_minor"]) == (3998, 3998, 3998)
    assert payment["status"] == "refunded"
    assert store.payment_operations("PAY-R1") == [
        ("capture", "CAP-R1", 3998),
        ("refund", "REF-R1", 1000),
        ("refund", "REF-R2", 2998),
    ]
    assert requests_to(fake_erp, "/payments/captures", "payment-capture:") == [
        (
            "payment-capture:CAP-R1",
            {
                "capture_id": "CAP-R1",
                "payment_id": "PAY-R1",
                "order_id": "ORD-R1",
                "amount_minor": 3998,
                "currency": "EUR",
            },
        )
    ]
    refunds = requests_to(fake_erp, "/payments/refunds", "payment-refund:")
    assert [key for key, _ in refunds] == ["payment-refund:REF-R1", "payment-refund:REF-R2"]
    assert refunds[0][1] == {
        "refund_id": "REF-R1",
        "payment_id": "PAY-R1",
        "order_id": "ORD-R1",
        "rma_id": None,
        "amount_minor": 1000,
        "currency": "EUR",
    }
    assert refunds[1][1]["amount_minor"] == 2998
    assert database.dead_letters() == []


def test_a_partial_shipment_leaves_the_order_partially_shipped_and_takes_the_units_off_the_shelf(
    worker: StartWorker, apply_event: ApplyEvent, database: Database, store: Store, fake_erp: FakeErp
) -> None:
    worker()
    database.seed_stock("TEE-RED-M", "BER-1", 10)
    apply_event("order.created", order("ORD-P1", [("1", "TEE-RED-M", 4, 1999)]))
    assert database.stock("TEE-RED-M", "BER-1")["reserved"] == 4

    apply_event("shipment.dispatched", dispatch("SHP-P1", "ORD-P1", "BER-1", [("1", 1)]))

    [stored] = database.orders("ORD-P1")
    assert stored["status"] == "partially_shipped"
    [line] = database.order_lines("ORD-P1")
    assert (line["status"], line["shipped"], line["location"]) == ("reserved", 1, "BER-1")
    level = database.stock("TEE-RED-M", "BER-1")
    assert (level["on_hand"], level["reserved"]) == (9, 3)
    [shipment] = store.shipments("ORD-P1")
    assert (shipment["shipment_id"], shipment["location"], shipment["status"]) == ("SHP-P1", "BER-1", "dispatched")
    assert store.shipment_lines("SHP-P1") == [("1", 1)]

    apply_event("shipment.dispatched", dispatch("SHP-P2", "ORD-P1", "BER-1", [("1", 3)]))

    assert database.orders("ORD-P1")[0]["status"] == "shipped"
    [line] = database.order_lines("ORD-P1")
    assert (line["status"], line["shipped"]) == ("shipped", 4)
    level = database.stock("TEE-RED-M", "BER-1")
    assert (level["on_hand"], level["reserved"]) == (6, 0)
    notes = requests_to(fake_erp, "/notify/notifications")
    assert [key for key, _ in notes] == ["notify:shipment-dispatched:SHP-P1", "notify:shipment-dispatched:SHP-P2"]
    assert notes[0][1] == {
        "template": "shipment_dispatched",
        "order_id": "ORD-P1",
        "customer_id": "C-ORD-P1",
        "shipment_id": "SHP-P1",
        "carrier": "DHL",
        "tracking_number": "TRK-SHP-P1",
        "order_status": "partially_shipped",
    }
    assert notes[1][1]["order_status"] == "shipped"
    assert database.dead_letters() == []


def test_a_split_order_ships_one_parcel_per_location_and_the_customer_hears_of_each_one(
    worker: StartWorker, apply_event: ApplyEvent, database: Database, store: Store, fake_erp: FakeErp
) -> None:
    worker()
    database.seed_stock("TEE-RED-M", "BER-1", 2)
    database.seed_stock("TEE-RED-M", "HAM-2", 5)

    apply_event("order.created", order("ORD-S1", [("1", "TEE-RED-M", 2, 1999), ("2", "TEE-RED-M", 3, 1999)]))

    lines = {line["line_id"]: line for line in database.order_lines("ORD-S1")}
    assert (lines["1"]["status"], lines["1"]["location"]) == ("reserved", "BER-1")
    assert (lines["2"]["status"], lines["2"]["location"]) == ("reserved", "HAM-2")
    assert database.stock("TEE-RED-M", "BER-1")["reserved"] == 2
    assert database.stock("TEE-RED-M", "HAM-2")["reserved"] == 3
    [export] = requests_to(fake_erp, "/orders")
    assert [(line["line_id"], line["location"]) for line in export[1]["lines"]] == [("1", "BER-1"), ("2", "HAM-2")]

    apply_event("shipment.dispatched", dispatch("SHP-S1", "ORD-S1", "BER-1", [("1", 2)]))
    assert database.orders("ORD-S1")[0]["status"] == "partially_shipped"
    apply_event("shipment.dispatched", dispatch("SHP-S2", "ORD-S1", "HAM-2", [("2", 3)]))
    assert database.orders("ORD-S1")[0]["status"] == "shipped"
    apply_event("shipment.delivered", delivery("SHP-S1", "ORD-S1"))
    assert database.orders("ORD-S1")[0]["status"] == "shipped", "one parcel is still on its way"
    apply_event("shipment.delivered", delivery("SHP-S2", "ORD-S1"))

    assert database.orders("ORD-S1")[0]["status"] == "delivered"
    shipments = store.shipments("ORD-S1")
    assert [(s["shipment_id"], s["location"], s["status"]) for s in shipments] == [
        ("SHP-S1", "BER-1", "delivered"),
        ("SHP-S2", "HAM-2", "delivered"),
    ]
    assert [store.shipment_lines(s["shipment_id"]) for s in shipments] == [[("1", 2)], [("2", 3)]]
    assert [line["delivered"] for line in database.order_lines("ORD-S1")] == [2, 3]
    berlin, hamburg = database.stock("TEE-RED-M", "BER-1"), database.stock("TEE-RED-M", "HAM-2")
    assert (berlin["on_hand"], berlin["reserved"], hamburg["on_hand"], hamburg["reserved"]) == (0, 0, 2, 0)
    notes = requests_to(fake_erp, "/notify/notifications")
    assert [(key, body["template"], body["shipment_id"], body["order_status"]) for key, body in notes] == [
        ("notify:shipment-dispatched:SHP-S1", "shipment_dispatched", "SHP-S1", "partially_shipped"),
        ("notify:shipment-dispatched:SHP-S2", "shipment_dispatched", "SHP-S2", "shipped"),
        ("notify:shipment-delivered:SHP-S1", "shipment_delivered", "SHP-S1", "shipped"),
        ("notify:shipment-delivered:SHP-S2", "shipment_delivered", "SHP-S2", "delivered"),
    ]
    assert {body["customer_id"] for _, body in notes} == {"C-ORD-S1"}
    assert database.dead_letters() == []


def test_an_out_of_stock_line_is_backordered_until_a_receipt_allocates_it_and_availability_is_pushed(
    worker: StartWorker, apply_event: ApplyEvent, database: Database, fake_erp: FakeErp
) -> None:
    worker()

    apply_event("order.created", order("ORD-B1", [("1", "LAMP-ARC", 2, 8900)]))

    assert database.orders("ORD-B1")[0]["status"] == "backordered"
    [line] = database.order_lines("ORD-B1")
    assert (line["status"], line["location"]) == ("backordered", None)
    [(key, export)] = requests_to(fake_erp, "/orders")
    assert (key, export["status"], export["lines"][0]["status"]) == (
        "order-export:ORD-B1",
        "backordered",
        "backordered",
    )
    assert requests_to(fake_erp, "/channels/availability") == [], "nothing was reserved"

    receipt = {"sku": "LAMP-ARC", "location": "HAM-2", "delta": 5, "reason": "receipt", "sequence": 1}
    apply_event("inventory.adjusted", receipt)

    assert database.orders("ORD-B1")[0]["status"] == "reserved"
    [line] = database.order_lines("ORD-B1")
    assert (line["status"], line["location"]) == ("reserved", "HAM-2")
    level = database.stock("LAMP-ARC", "HAM-2")
    assert (level["on_hand"], level["reserved"], level["last_sequence"]) == (5, 2, 1)
    assert requests_to(fake_erp, "/channels/availability") == [
        ("atp:inventory.adjusted:LAMP-ARC@HAM-2#1:LAMP-ARC", {"sku": "LAMP-ARC", "available": 3})
    ]
    assert database.dead_letters() == []


def test_a_failed_payment_notifies_the_customer_and_a_later_capture_is_dead_lettered_with_the_reason(
    worker: StartWorker,
    apply_event: ApplyEvent,
    emit: Emit,
    database: Database,
    store: Store,
    fake_erp: FakeErp,
    wait_for: WaitFor,
) -> None:
    worker()
    database.seed_stock("MUG-BLUE", "BER-1", 5)
    apply_event("order.created", order("ORD-F1", [("1", "MUG-BLUE", 1, 1200)]))
    apply_event("payment.authorized", authorization("PAY-F1", "ORD-F1", 1200))

    failure = {"payment_id": "PAY-F1", "order_id": "ORD-F1", "operation": "capture", "code": "insufficient_funds"}
    apply_event("payment.failed", failure)

    assert store.payment("PAY-F1")["status"] == "failed"
    assert requests_to(fake_erp, "/notify/notifications") == [
        (
            "notify:payment-failed:PAY-F1:capture",
            {
                "template": "payment_failed",
                "order_id": "ORD-F1",
                "customer_id": "C-ORD-F1",
                "operation": "capture",
                "code": "insufficient_funds",
            },
        )
    ]

    capture = emit("payment.captured", paid("capture", "CAP-F1", "PAY-F1", "ORD-F1", 1200, "EUR"))

    row = wait_for(lambda: store.dead_letter(capture["message_id"]), what="the refused capture in the archive")
    assert (row["stage"], row["attempts"], row["error_type"]) == ("handler", 1, "PermanentError")
    assert "payment PAY-F1 has failed; capture CAP-F1 is refused" in row["error_message"]
    assert (row["flow"], row["contract"], row["dedup_key"]) == ("payments", "payment.captured", "CAP-F1")
    assert row["business_keys"] == {"payment_id": "PAY-F1", "order_id": "ORD-F1"}
    payment = store.payment("PAY-F1")
    assert (payment["captured_minor"], payment["status"]) == (0, "failed")
    assert store.payment_operations("PAY-F1") == []
    assert requests_to(fake_erp, "/payments/captures", "payment-capture:") == []


def test_orders_from_duplicate_customer_records_are_all_applied(
    worker: StartWorker, apply_event: ApplyEvent, database: Database, fake_erp: FakeErp
) -> None:
    worker()
    database.seed_stock("MUG-BLUE", "BER-1", 10)
    placed = [
        ("ORD-D1", "C-100", "sam@example.com"),
        ("ORD-D2", "C-200", "sam@example.com"),  # a second customer record with the same email
        ("ORD-D3", "C-300", "kim@example.com"),
        ("ORD-D4", "C-300", "kim@example.com"),  # the same customer again
    ]

    for order_id, customer_id, email in placed:
        apply_event(
            "order.created", order(order_id, [("1", "MUG-BLUE", 1, 1200)], customer_id=customer_id, email=email)
        )

    assert [(o["order_id"], o["customer_id"], o["status"]) for o in database.orders()] == [
        ("ORD-D1", "C-100", "reserved"),
        ("ORD-D2", "C-200", "reserved"),
        ("ORD-D3", "C-300", "reserved"),
        ("ORD-D4", "C-300", "reserved"),
    ]
    assert database.stock("MUG-BLUE", "BER-1")["reserved"] == 4
    exports = requests_to(fake_erp, "/orders")
    assert [(key, body["customer_id"]) for key, body in exports] == [
        ("order-export:ORD-D1", "C-100"),
        ("order-export:ORD-D2", "C-200"),
        ("order-export:ORD-D3", "C-300"),
        ("order-export:ORD-D4", "C-300"),
    ]
    assert sorted(fake_erp.exports()) == [f"order-export:ORD-D{n}" for n in range(1, 5)]
    assert database.dead_letters() == []


def test_a_tax_exempt_buyer_is_exported_to_the_erp_as_tax_exempt(
    worker: StartWorker, apply_event: ApplyEvent, database: Database, fake_erp: FakeErp
) -> None:
    worker()
    database.seed_stock("MUG-BLUE", "BER-1", 10)

    apply_event("order.created", order("ORD-T1", [("1", "MUG-BLUE", 3, 1000)], tax_exempt=True))
    apply_event("order.created", order("ORD-T2", [("1", "MUG-BLUE", 1, 1000)]))

    assert {o["order_id"]: o["tax_exempt"] for o in database.orders()} == {"ORD-T1": 1, "ORD-T2": 0}
    exports = dict(requests_to(fake_erp, "/orders"))
    assert exports["order-export:ORD-T1"]["tax_exempt"] is True
    assert exports["order-export:ORD-T1"]["total_minor"] == 3000
    assert exports["order-export:ORD-T2"]["tax_exempt"] is False


def test_localized_product_text_reaches_the_channels_exactly_as_written(
    worker: StartWorker, apply_event: ApplyEvent, database: Database, store: Store, fake_erp: FakeErp
) -> None:
    worker()
    title = "緑茶マグカップ「富士」 \u2013 Größe L"
    # A decomposed "ë" (e + combining diaeresis) and an emoji outside the BMP: nothing may normalise or escape them.
    description = "Spülmaschinenfest, handgemacht in Köln. 電子レンジ対応。 Zoe\u0308 sagt: 🍵"
    assert unicodedata.normalize("NFC", description) != description
    attributes = {"Farbe": "抹茶グリーン", "Größe": "L", "материал": "керамика"}
    product = {"sku": "MUG-FUJI", "revision": 3, "title": title, "description": description, "attributes": attributes}

    apply_event("product.updated", product, raw_utf8=True)

    [(key, body)] = requests_to(fake_erp, "/channels/products")
    assert key == "product:MUG-FUJI:3"
    assert body == product
    assert body["description"].encode("utf-8") == description.encode("utf-8")
    stored = store.product("MUG-FUJI")
    assert (stored["revision"], stored["title"], stored["description"]) == (3, title, description)
    assert stored["attributes"] == attributes

    apply_event("product.updated", {**product, "revision": 2, "title": "Alter Titel"}, raw_utf8=True)

    assert len(requests_to(fake_erp, "/channels/products")) == 1, "an older revision is not propagated"
    assert (store.product("MUG-FUJI")["revision"], store.product("MUG-FUJI")["title"]) == (3, title)
    assert database.dead_letters() == []


def test_a_price_change_older_than_the_current_price_is_counted_stale_and_not_posted(
    worker: StartWorker, apply_event: ApplyEvent, database: Database, store: Store, fake_erp: FakeErp, metrics: Metrics
) -> None:
    running = worker(FLOWFLEET_METRICS_PORT=str(metrics.port))
    current = {"sku": "TEE-RED-M", "currency": "EUR", "amount_minor": 1799, "effective_at": "2026-11-26T00:00:00Z"}
    apply_event("price.changed", current)

    older = {"sku": "TEE-RED-M", "currency": "EUR", "amount_minor": 2499, "effective_at": "2026-11-20T09:00:00+01:00"}
    apply_event("price.changed", older)

    price = store.price("TEE-RED-M", "EUR")
    assert (price["amount_minor"], price["effective_at"].isoformat()) == (1799, "2026-11-26T00:00:00+00:00")
    assert requests_to(fake_erp, "/channels/prices") == [
        (
            "price:TEE-RED-M:EUR:2026-11-26T00:00:00+00:00",
            {"sku": "TEE-RED-M", "currency": "EUR", "amount_minor": 1799, "effective_at": "2026-11-26T00:00:00+00:00"},
        )
    ]
    assert metrics.value("flowfleet_stale_events_total", flow="catalog", contract="price.changed") == 1
    assert metrics.value("flowfleet_messages_total", contract="price.changed", outcome="dead_lettered") == 0
    assert "stale catalog event changed nothing" in running.log()
    assert database.dead_letters() == []


def test_orders_in_yen_and_pounds_are_paid_in_their_currency_and_a_capture_in_another_is_dead_lettered(
    worker: StartWorker,
    apply_event: ApplyEvent,
    emit: Emit,
    database: Database,
    store: Store,
    fake_erp: FakeErp,
    wait_for: WaitFor,
) -> None:
    worker()
    database.seed_stock("MUG-BLUE", "BER-1", 10)
    apply_event("order.created", order("ORD-JPY", [("1", "MUG-BLUE", 2, 1500)], currency="JPY"))
    apply_event("order.created", order("ORD-GBP", [("1", "MUG-BLUE", 1, 1250)], currency="GBP"))
    apply_event("payment.authorized", authorization("PAY-JPY", "ORD-JPY", 3000, "JPY"))
    apply_event("payment.authorized", authorization("PAY-GBP", "ORD-GBP", 1250, "GBP"))

    apply_event("payment.captured", paid("capture", "CAP-JPY-1", "PAY-JPY", "ORD-JPY", 1500, "JPY"))
    apply_event("payment.captured", paid("capture", "CAP-GBP-1", "PAY-GBP", "ORD-GBP", 1250, "GBP"))
    wrong = emit("payment.captured", paid("capture", "CAP-JPY-2", "PAY-JPY", "ORD-JPY", 1500, "EUR"))

    row = wait_for(lambda: store.dead_letter(wrong["message_id"]), what="the capture in the wrong currency")
    assert (row["stage"], row["attempts"], row["error_type"]) == ("handler", 1, "PermanentError")
    assert "capture in EUR for payment PAY-JPY, which is in JPY" in row["error_message"]
    assert {o["order_id"]: o["currency"] for o in database.orders()} == {"ORD-GBP": "GBP", "ORD-JPY": "JPY"}
    jpy, gbp = store.payment("PAY-JPY"), store.payment("PAY-GBP")
    assert (jpy["currency"], jpy["authorized_minor"], jpy["captured_minor"]) == ("JPY", 3000, 1500)
    assert (gbp["currency"], gbp["authorized_minor"], gbp["captured_minor"]) == ("GBP", 1250, 1250)
    captures = requests_to(fake_erp, "/payments/captures", "payment-capture:")
    assert [(key, body["amount_minor"], body["currency"]) for key, body in captures] == [
        ("payment-capture:CAP-JPY-1", 1500, "JPY"),
        ("payment-capture:CAP-GBP-1", 1250, "GBP"),
    ]
    exports = dict(requests_to(fake_erp, "/orders"))
    assert (exports["order-export:ORD-JPY"]["currency"], exports["order-export:ORD-JPY"]["total_minor"]) == (
        "JPY",
        3000,
    )
    assert exports["order-export:ORD-GBP"]["currency"] == "GBP"


def test_a_marketplace_order_reaches_the_erp_with_its_marketplace_channel(
    worker: StartWorker, apply_event: ApplyEvent, database: Database, fake_erp: FakeErp
) -> None:
    worker()
    database.seed_stock("TEE-RED-M", "BER-1", 10)

    apply_event("order.created", order("ORD-M1", [("1", "TEE-RED-M", 1, 1999)], channel="marketplace:amazon"))
    apply_event("order.created", order("ORD-M2", [("1", "TEE-RED-M", 2, 1999)], channel="marketplace:zalando_de"))

    assert {o["order_id"]: o["channel"] for o in database.orders()} == {
        "ORD-M1": "marketplace:amazon",
        "ORD-M2": "marketplace:zalando_de",
    }
    exports = dict(requests_to(fake_erp, "/orders"))
    assert exports["order-export:ORD-M1"]["channel"] == "marketplace:amazon"
    assert exports["order-export:ORD-M2"]["channel"] == "marketplace:zalando_de"
    assert database.stock("TEE-RED-M", "BER-1")["reserved"] == 3


def test_a_return_with_a_damaged_unit_and_an_adjustment_restocks_quarantines_and_refunds_the_difference(
    worker: StartWorker, apply_event: ApplyEvent, database: Database, store: Store, fake_erp: FakeErp
) -> None:
    worker()
    database.seed_stock("TEE-RED-M", "BER-1", 2)
    apply_event("order.created", order("ORD-X1", [("1", "TEE-RED-M", 1, 1999), ("2", "TEE-RED-M", 1, 1999)]))
    apply_event("shipment.dispatched", dispatch("SHP-X1", "ORD-X1", "BER-1", [("1", 1), ("2", 1)]))
    apply_event("shipment.delivered", delivery("SHP-X1", "ORD-X1"))
    assert database.orders("ORD-X1")[0]["status"] == "delivered"
    apply_event("order.created", order("ORD-X2", [("1", "TEE-RED-M", 1, 1999)]))
    assert database.orders("ORD-X2")[0]["status"] == "backordered", "the shelf is empty"

    requested = {
        "rma_id": "RMA-X1",
        "order_id": "ORD-X1",
        "location": "RET-HUB",
        "lines": [{"line_id": "1", "quantity": 1, "reason": "zu klein"}, {"line_id": "2", "quantity": 1}],
    }
    apply_event("return.requested", requested)

    rma = store.rma("RMA-X1")
    assert (rma["status"], rma["location"], rma["refunded_minor"]) == ("requested", "RET-HUB", 0)
    hub = database.stock("TEE-RED-M", "RET-HUB")
    assert (hub["return_pending"], hub["on_hand"], hub["quarantined"]) == (2, 0, 0)
    assert [line["return_requested"] for line in database.order_lines("ORD-X1")] == [1, 1]

    received = {
        "receipt_id": "RCV-X1",
        "rma_id": "RMA-X1",
        "order_id": "ORD-X1",
        "lines": [
            {"line_id": "1", "quantity": 1, "condition": "sellable"},
            {"line_id": "2", "quantity": 1, "condition": "damaged"},
        ],
        "adjustment_minor": 500,
    }
    apply_event("return.received", received)

    hub = database.stock("TEE-RED-M", "RET-HUB")
    # The sellable unit became available there and went to the waiting backorder; the damaged one is quarantined.
    assert (hub["on_hand"], hub["quarantined"], hub["return_pending"], hub["reserved"]) == (2, 1, 0, 1)
    assert database.orders("ORD-X2")[0]["status"] == "reserved"
    assert [(line["status"], line["location"]) for line in database.order_lines("ORD-X2")] == [("reserved", "RET-HUB")]
    rma = store.rma("RMA-X1")
    assert (rma["status"], rma["refunded_minor"], rma["receipts"]) == ("received", 1999 * 2 - 500, ["RCV-X1"])
    assert [
        (line["line_id"], line["received"], line["sellable"], line["damaged"]) for line in store.rma_lines("RMA-X1")
    ] == [
        ("1", 1, 1, 0),
        ("2", 1, 0, 1),
    ]
    assert requests_to(fake_erp, "/payment-gateway/refunds", "return-refund:") == [
        (
            "return-refund:RCV-X1",
            {
                "rma_id": "RMA-X1",
                "receipt_id": "RCV-X1",
                "order_id": "ORD-X1",
                "amount_minor": 1999 * 2 - 500,
                "currency": "EUR",
                "adjustment_minor": 500,
            },
        )
    ]
    assert requests_to(fake_erp, "/channels/availability", "atp:return.received:") == [
        ("atp:return.received:RCV-X1:TEE-RED-M", {"sku": "TEE-RED-M", "available": 0})
    ]
    assert requests_to(fake_erp, "/payments/refunds", "payment-refund:") == [], "the ERP hears of the payment's refund"
    assert database.dead_letters() == []


def test_an_inventory_count_older_than_the_last_applied_one_changes_nothing_and_is_not_dead_lettered(
    worker: StartWorker, apply_event: ApplyEvent, database: Database, store: Store, fake_erp: FakeErp, metrics: Metrics
) -> None:
    worker(FLOWFLEET_METRICS_PORT=str(metrics.port))
    apply_event("inventory.counted", {"sku": "MUG-BLUE", "location": "BER-1", "on_hand": 10, "sequence": 5})

    apply_event("inventory.counted", {"sku": "MUG-BLUE", "location": "BER-1", "on_hand": 99, "sequence": 3})

    level = database.stock("MUG-BLUE", "BER-1")
    assert (level["on_hand"], level["last_sequence"]) == (10, 5)
    assert store.applied("inventory.counted", "MUG-BLUE@BER-1#3"), "the stale count was handled"
    assert requests_to(fake_erp, "/channels/availability") == [
        ("atp:inventory.counted:MUG-BLUE@BER-1#5:MUG-BLUE", {"sku": "MUG-BLUE", "available": 10})
    ]
    assert metrics.value("flowfleet_stale_events_total", flow="inventory", contract="inventory.counted") == 1
    assert database.dead_letters() == []


def test_a_cancelled_order_releases_its_reservations_and_the_erp_and_channels_are_told(
    worker: StartWorker, apply_event: ApplyEvent, database: Database, fake_erp: FakeErp
) -> None:
    worker()
    database.seed_stock("TEE-RED-M", "BER-1", 3)
    database.seed_stock("MUG-BLUE", "HAM-2", 4)
    apply_event(
        "order.created",
        order("ORD-C1", [("1", "TEE-RED-M", 2, 1999), ("2", "MUG-BLUE", 4, 1200), ("3", "LAMP-ARC", 1, 8900)]),
    )
    assert database.orders("ORD-C1")[0]["status"] == "partially_backordered"
    apply_event("order.created", order("ORD-C2", [("1", "TEE-RED-M", 2, 1999)]))
    assert database.orders("ORD-C2")[0]["status"] == "backordered", "only 1 T-shirt is left"

    apply_event("order.cancelled", {"order_id": "ORD-C1", "reason": "customer_request"})

    assert database.orders("ORD-C1")[0]["status"] == "cancelled"
    assert [(line["status"], line["location"]) for line in database.order_lines("ORD-C1")] == [("cancelled", None)] * 3
    assert database.stock("MUG-BLUE", "HAM-2")["reserved"] == 0
    # The two released T-shirts went to the backordered order.
    assert database.orders("ORD-C2")[0]["status"] == "reserved"
    assert [(line["status"], line["location"]) for line in database.order_lines("ORD-C2")] == [("reserved", "BER-1")]
    assert database.stock("TEE-RED-M", "BER-1")["reserved"] == 2
    assert requests_to(fake_erp, "/orders/ORD-C1/cancellation") == [
        ("order-cancel:ORD-C1", {"order_id": "ORD-C1", "reason": "customer_request"})
    ]
    pushed = requests_to(fake_erp, "/channels/availability")
    assert pushed[-2:] == [
        ("atp:order.cancelled:ORD-C1:MUG-BLUE", {"sku": "MUG-BLUE", "available": 4}),
        ("atp:order.cancelled:ORD-C1:TEE-RED-M", {"sku": "TEE-RED-M", "available": 1}),
    ]
    assert database.dead_letters() == []


def test_a_cancel_after_shipment_is_dead_lettered_with_a_reason_and_changes_nothing(
    worker: StartWorker,
    apply_event: ApplyEvent,
    emit: Emit,
    database: Database,
    store: Store,
    fake_erp: FakeErp,
    wait_for: WaitFor,
) -> None:
    worker()
    database.seed_stock("TEE-RED-M", "BER-1", 5)
    apply_event("order.created", order("ORD-K1", [("1", "TEE-RED-M", 1, 1999), ("2", "TEE-RED-M", 2, 1999)]))
    apply_event("shipment.dispatched", dispatch("SHP-K1", "ORD-K1", "BER-1", [("1", 1)]))

    cancel = emit("order.cancelled", {"order_id": "ORD-K1", "reason": "customer_request"})

    row = wait_for(lambda: store.dead_letter(cancel["message_id"]), what="the refused cancel in the archive")
    assert (row["stage"], row["attempts"], row["error_type"]) == ("handler", 1, "PermanentError")
    assert "order ORD-K1 cannot be cancelled: lines 1 have shipped (use a return)" in row["error_message"]
    assert row["business_keys"] == {"order_id": "ORD-K1"}
    assert database.orders("ORD-K1")[0]["status"] == "partially_shipped"
    assert [line["status"] for line in database.order_lines("ORD-K1")] == ["shipped", "reserved"]
    level = database.stock("TEE-RED-M", "BER-1")
    assert (level["on_hand"], level["reserved"]) == (4, 2)
    assert requests_to(fake_erp, "/orders/ORD-K1/cancellation") == []
