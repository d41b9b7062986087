"""The embedded demo's script: one realistic day of a retailer's events across all six flows.

The day runs in phases, as it does in a shop: night (catalog and stock counts), morning
(orders), midday (payments, cancellations, a goods receipt), afternoon (shipments), evening
(deliveries, late and stale events), late evening (a return), night again (its receipt and
refund). Inside a phase events race each other across flow queues, as in production; the
failure policy's retries sort out what arrives out of order.

Over 300 lines on purpose: it is the day's script, data more than code, read from top to bottom.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from contracts.publishing import encode, new_envelope

#: (routing key, body, what it shows)
Step = tuple[str, bytes, str]

#: The ERP's script: this order meets two 503s before it is accepted; this one is refused; this one never gets through.
FLAKY, REFUSED, DOWN = "ORD-2003", "ORD-2004", "ORD-2005"


def erp_answers(_path: str, payload: Mapping[str, Any], _key: str, attempt: int) -> int:
    order_id = payload.get("order_id")
    if order_id == FLAKY and attempt <= 2:
        return 503
    if order_id == REFUSED:
        return 400
    if order_id == DOWN:
        return 503
    return 200


def envelope(
    contract: str,
    data: dict[str, Any],
    *,
    version: int = 1,
    age: timedelta = timedelta(minutes=3),
    producer: str = "storefront",
) -> bytes:
    return encode(new_envelope(contract, data, version=version, age=age, producer=producer))


def step(contract: str, data: dict[str, Any], note: str, **options: Any) -> Step:
    return contract, envelope(contract, data, **options), note


def order_v2(
    order_id: str,
    lines: list[tuple[str, int]],
    *,
    channel: str = "storefront",
    currency: str = "EUR",
    price: int = 1999,
    **fields: Any,
) -> dict[str, Any]:
    return {
        "order_id": order_id,
        "channel": channel,
        "customer": {
            "customer_id": f"C-{order_id[-3:]}",
            "email": f"{order_id.lower()}@example.com",
            "name": "Zoë Ångström",
        },
        "currency": currency,
        "lines": [
            {"line_id": str(n), "sku": sku, "quantity": qty, "unit_price_minor": price, "title": "Café-Tasse"}
            for n, (sku, qty) in enumerate(lines, start=1)
        ],
        "total_minor": price * sum(qty for _, qty in lines),
        **fields,
    }


def order_v1(order_id: str, sku: str, qty: int) -> dict[str, Any]:
    return {
        "order_id": order_id,
        "email": "legacy@example.com",
        "currency": "GBP",
        "items": [{"sku": sku, "qty": qty, "unit_price_cents": 1250}],
        "total_cents": 1250 * qty,
    }


def count(sku: str, location: str, on_hand: int, sequence: int) -> dict[str, Any]:
    return {"sku": sku, "location": location, "on_hand": on_hand, "sequence": sequence}


def night() -> list[Step]:
    yesterday = (datetime.now(UTC) - timedelta(days=1)).replace(microsecond=0)
    return [
        step("inventory.counted", count("TEE-RED-M", "BER-1", 40, 5), "stock count", producer="wms"),
        step("inventory.counted", count("TEE-RED-M", "HAM-2", 10, 5), "stock count", producer="wms"),
        step("inventory.counted", count("MUG-BLUE", "BER-1", 25, 5), "stock count", producer="wms"),
        step("inventory.counted", count("LAMP-ARC", "HAM-2", 1, 5), "stock count", producer="wms"),
        step(
            "product.updated",
            {"sku": "SNEAKER-42", "revision": 3, "title": "Laufschuh „Blitz“, Größe 42", "attributes": {"色": "赤"}},
            "localized product text",
            producer="pim",
        ),
        step(
            "product.updated", {"sku": "TEE-RED-M", "revision": 2, "title": "T-Shirt rot, M"}, "product", producer="pim"
        ),
        step(
            "price.changed",
            {"sku": "TEE-RED-M", "currency": "EUR", "amount_minor": 1999, "effective_at": yesterday.isoformat()},
            "price",
            producer="pim",
        ),
        step(
            "price.changed",
            {"sku": "MUG-BLUE", "currency": "JPY", "amount_minor": 1800, "effective_at": yesterday.isoformat()},
            "price in yen",
            producer="pim",
        ),
    ]


def morning() -> list[Step]:
    """Storefront and marketplace orders, including every kind of bad input."""
    duplicate = order_v2("ORD-2001", [("TEE-RED-M", 2)])
    bad_quantity = order_v2("ORD-2010", [("MUG-BLUE", 1)])
    bad_quantity["lines"][0]["quantity"] = -3
    return [
        step("order.created", duplicate, "v2 order", version=2),
        step("order.created", duplicate, "same order again (new message_id)", version=2),
        step(
            "order.created",
            order_v2("ORD-2002", [("MUG-BLUE", 3), ("TEE-RED-M", 1)], channel="marketplace:amazon"),
            "marketplace order",
            version=2,
        ),
        step("order.created", order_v1("ORD-1999", "MUG-BLUE", 2), "legacy v1 order"),
        step("order.created", order_v2(FLAKY, [("TEE-RED-M", 1)]), "ERP 503 twice", version=2),
        step("order.created", order_v2(REFUSED, [("MUG-BLUE", 1)]), "ERP 400", version=2),
        step("order.created", order_v2(DOWN, [("MUG-BLUE", 1)]), "ERP down", version=2),
        step("order.created", order_v2("ORD-2006", [("LAMP-ARC", 3)]), "out of stock", version=2),
        step(
            "order.created",
            order_v2("ORD-2007", [("TEE-RED-M", 45), ("MUG-BLUE", 1)]),
            "45 shirts, more than any one warehouse holds",
            version=2,
        ),
        step("order.created", order_v2("ORD-2008", [("LAMP-ARC", 1), ("MUG-BLUE", 2)]), "split order", version=2),
        step(
            "order.created",
            order_v2(
                "ORD-2009",
                [("MUG-BLUE", 1)],
                channel="marketplace:rakuten",
                currency="JPY",
                price=1800,
                tax_exempt=True,
            ),
            "tax-exempt marketplace order in yen",
            version=2,
        ),
        step("order.created", order_v2("ORD-2013", [("SNEAKER-42", 2)]), "backordered until stock arrives", version=2),
        ("order.created", b'{"message_id": "m-broken", "contract": "order.created", "vers', "truncated JSON"),
        step("order.created", bad_quantity, "negative quantity", version=2),
        step("order.created", order_v2("ORD-2011", [("MUG-BLUE", 1)]), "unknown version", version=7),
        step("order.created", order_v2("ORD-2012", [("MUG-BLUE", 1)]), "too old", version=2, age=timedelta(days=9)),
    ]


def payment(**data: Any) -> dict[str, Any]:
    return {"currency": "EUR", **data}


def midday() -> list[Step]:
    """Payments (one capture overtakes its authorization), a failed payment, a cancel, a goods receipt."""
    return [
        step("order.created", order_v2("ORD-2001", [("TEE-RED-M", 2)]), "the duplicate, hours later", version=2),
        step(
            "payment.authorized",
            payment(payment_id="PAY-2001", order_id="ORD-2001", amount_minor=3998),
            "authorization",
            producer="psp",
        ),
        step(
            "payment.captured",
            payment(capture_id="CAP-2001-A", payment_id="PAY-2001", order_id="ORD-2001", amount_minor=2000),
            "partial capture",
            producer="psp",
        ),
        step(
            "payment.captured",
            payment(capture_id="CAP-2001-B", payment_id="PAY-2001", order_id="ORD-2001", amount_minor=1998),
            "second partial capture",
            producer="psp",
        ),
        step(
            "payment.captured",
            payment(capture_id="CAP-2008", payment_id="PAY-2008", order_id="ORD-2008", amount_minor=5997),
            "capture published before its authorization",
            producer="psp",
        ),
        step(
            "payment.authorized",
            payment(payment_id="PAY-2008", order_id="ORD-2008", amount_minor=5997),
            "the authorization, late",
            producer="psp",
        ),
        step(
            "payment.authorized",
            {"payment_id": "PAY-2009", "order_id": "ORD-2009", "amount_minor": 1800, "currency": "JPY"},
            "authorization in yen",
            producer="psp",
        ),
        step(
            "payment.failed",
            {"payment_id": "PAY-2006", "order_id": "ORD-2006", "operation": "authorization", "code": "card_declined"},
            "declined card",
            producer="psp",
        ),
        step("order.cancelled", {"order_id": "ORD-2006", "reason": "payment_failed"}, "cancelled after the decline"),
        step(
            "inventory.adjusted",
            {"sku": "SNEAKER-42", "location": "BER-1", "delta": 10, "reason": "receipt", "sequence": 1},
            "goods receipt: serves the sneaker backorder",
            producer="wms",
        ),
    ]


def shipment(shipment_id: str, order_id: str, location: str, *lines: tuple[str, int]) -> dict[str, Any]:
    return {
        "shipment_id": shipment_id,
        "order_id": order_id,
        "location": location,
        "carrier": "DHL",
        "tracking_number": f"00340{shipment_id[-3:]}",
        "lines": [{"line_id": line_id, "quantity": quantity} for line_id, quantity in lines],
    }


def afternoon() -> list[Step]:
    """Partial and split shipments; a capture for the declined payment."""
    return [
        step(
            "shipment.dispatched",
            shipment("SHP-001", "ORD-2001", "BER-1", ("1", 1)),
            "partial shipment",
            producer="wms",
        ),
        step("shipment.dispatched", shipment("SHP-002", "ORD-2001", "BER-1", ("1", 1)), "the rest", producer="wms"),
        step("shipment.dispatched", shipment("SHP-003", "ORD-2008", "HAM-2", ("1", 1)), "split: lamp", producer="wms"),
        step("shipment.dispatched", shipment("SHP-004", "ORD-2008", "BER-1", ("2", 2)), "split: mugs", producer="wms"),
        step(
            "shipment.dispatched", shipment("SHP-005", "ORD-2013", "BER-1", ("1", 2)), "the backorder", producer="wms"
        ),
        step(
            "payment.captured",
            payment(capture_id="CAP-2006", payment_id="PAY-2006", order_id="ORD-2006", amount_minor=5997),
            "capture of a declined payment",
            producer="psp",
        ),
    ]


def evening() -> list[Step]:
    """Deliveries, and events older than what was already applied (stale: counted, not dead letters)."""
    last_week = (datetime.now(UTC) - timedelta(days=7)).replace(microsecond=0)
    delivered_at = datetime.now(UTC).replace(microsecond=0).isoformat()
    return [
        *[
            step(
                "shipment.delivered",
                {"shipment_id": shipment_id, "order_id": order_id, "delivered_at": delivered_at},
                "delivered",
                producer="carrier",
            )
            for shipment_id, order_id in (
                ("SHP-001", "ORD-2001"),
                ("SHP-002", "ORD-2001"),
                ("SHP-003", "ORD-2008"),
                ("SHP-004", "ORD-2008"),
            )
        ],
        step("inventory.counted", count("TEE-RED-M", "BER-1", 99, 3), "late count (stale)", producer="wms"),
        step(
            "price.changed",
            {"sku": "TEE-RED-M", "currency": "EUR", "amount_minor": 2499, "effective_at": last_week.isoformat()},
            "last week's price (stale)",
            producer="pim",
        ),
        step("product.updated", {"sku": "TEE-RED-M", "revision": 1, "title": "T-Shirt"}, "old revision (stale)"),
    ]


def late_evening() -> list[Step]:
    return [
        step(
            "return.requested",
            {
                "rma_id": "RMA-001",
                "order_id": "ORD-2001",
                "location": "RET-1",
                "lines": [{"line_id": "1", "quantity": 2, "reason": "zu klein"}],
            },
            "return of both shirts",
            producer="storefront",
        )
    ]


def next_night() -> list[Step]:
    return [
        step(
            "return.received",
            {
                "receipt_id": "RCV-001",
                "rma_id": "RMA-001",
                "order_id": "ORD-2001",
                "lines": [{"line_id": "1", "quantity": 2, "condition": "sellable"}],
                "adjustment_minor": 300,
            },
            "return received, restocking fee",
            producer="wms",
        ),
        step(
            "payment.refunded",
            payment(
                refund_id="REF-001",
                payment_id="PAY-2001",
                order_id="ORD-2001",
                amount_minor=3698,
                rma_id="RMA-001",
            ),
            "refund",
            producer="psp",
        ),
    ]


#: The orders placed while the ERP is paused for its maintenance window.
MAINTENANCE_ORDERS = ("ORD-3001", "ORD-3002", "ORD-3003")


def maintenance_window() -> list[Step]:
    """The ERP is paused for an upgrade; the storefront keeps selling and the warehouse keeps counting."""
    return [
        *(
            step("order.created", order_v2(order_id, [("MUG-BLUE", 1)]), "during the ERP window", version=2)
            for order_id in MAINTENANCE_ORDERS
        ),
        step(
            "inventory.adjusted",
            {"sku": "MUG-BLUE", "location": "BER-1", "delta": 4, "reason": "receipt", "sequence": 100},
            "goods receipt",
            producer="wms",
        ),
    ]


def day() -> list[tuple[str, list[Step]]]:
    """The phases of the day, in order, each with its events."""
    return [
        ("night: stock counts and catalog", night()),
        ("morning: orders", morning()),
        ("midday: payments, a cancel, a goods receipt", midday()),
        ("afternoon: shipments", afternoon()),
        ("evening: deliveries and late events", evening()),
        ("late evening: a return", late_evening()),
        ("night: the return arrives, the refund", next_night()),
    ]
