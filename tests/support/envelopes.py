"""Builders for the bodies publishers send: order.created v1/v2 envelopes, valid or not, for worker tests."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from contracts.publishing import encode, new_envelope

ORDER_CREATED = "order.created"


def envelope(
    data: dict[str, Any],
    *,
    version: int = 2,
    contract: str = ORDER_CREATED,
    message_id: str | None = None,
    age: timedelta = timedelta(minutes=3),
    producer: str = "storefront",
) -> bytes:
    """A UTF-8 JSON envelope as an upstream team publishes it; a fresh message_id unless one is given."""
    return encode(new_envelope(contract, data, version=version, message_id=message_id, age=age, producer=producer))


def order_v2(
    order_id: str,
    lines: Sequence[tuple[str, int]] = (("TEE-RED-M", 2),),
    *,
    channel: str = "storefront",
    email: str | None = None,
    name: str = "Zoë Ångström",
    unit_price_minor: int = 1999,
) -> dict[str, Any]:
    """`order.created` v2 data: one line per (sku, quantity), numbered from 1."""
    return {
        "order_id": order_id,
        "channel": channel,
        "customer": {
            "customer_id": f"C-{order_id}",
            "email": email or f"{order_id.lower()}@example.com",
            "name": name,
        },
        "currency": "EUR",
        "lines": [
            {
                "line_id": str(n),
                "sku": sku,
                "quantity": qty,
                "unit_price_minor": unit_price_minor,
                "title": "Café-Tasse",
            }
            for n, (sku, qty) in enumerate(lines, start=1)
        ],
        "total_minor": unit_price_minor * sum(qty for _, qty in lines),
    }


def order_v1(order_id: str, sku: str, qty: int, *, email: str = "legacy@example.com") -> dict[str, Any]:
    """`order.created` v1 data, as the legacy storefront still sends it: flat items, prices in cents."""
    return {
        "order_id": order_id,
        "email": email,
        "currency": "GBP",
        "items": [{"sku": sku, "qty": qty, "unit_price_cents": 1250}],
        "total_cents": 1250 * qty,
    }


def message_id_of(body: bytes) -> str:
    """The message_id inside an envelope built here."""
    value: str = json.loads(body)["message_id"]
    return value
