"""The orders flow's contracts: `order.created` v1 (legacy storefront) and v2 with its upcaster, `order.cancelled`."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, model_validator

from contracts.base import UNIQUE_LINE_IDS, unique
from contracts.base import ContractModel as _Model
from contracts.registry import Contract
from contracts.types import CountryCode, Currency, Email, Id, MinorUnits, Quantity, Sku, Text

FLOW = "orders"


class OrderItemV1(_Model):
    sku: Sku
    qty: Quantity
    unit_price_cents: MinorUnits


class OrderCreatedV1(_Model):
    """The legacy storefront's order: one email, flat items, prices in cents."""

    order_id: Id
    email: Email
    currency: Currency
    items: Annotated[list[OrderItemV1], Field(min_length=1, max_length=500)]
    total_cents: MinorUnits


class Customer(_Model):
    customer_id: Id | None = None
    email: Email
    name: Text | None = None


class Address(_Model):
    name: Text
    line1: Text
    line2: Text | None = None
    city: Text
    postal_code: Annotated[str, Field(strict=True, max_length=20)]
    country: CountryCode


class OrderLine(_Model):
    line_id: Id
    sku: Sku
    quantity: Quantity
    unit_price_minor: MinorUnits
    title: Text | None = None


class OrderCreatedV2(_Model):
    """An order placed on a sales channel (storefront or a marketplace), ready to reserve stock for."""

    order_id: Id
    channel: Annotated[str, Field(strict=True, pattern=r"^(storefront|marketplace:[a-z0-9_-]{1,32})$")]
    customer: Customer
    ship_to: Address | None = None
    currency: Currency
    lines: Annotated[list[OrderLine], Field(min_length=1, max_length=500, description=UNIQUE_LINE_IDS)]
    total_minor: MinorUnits
    tax_exempt: bool = False

    @model_validator(mode="after")
    def _line_ids_are_unique(self) -> OrderCreatedV2:
        unique([line.line_id for line in self.lines], "line_id")
        return self


def upcast_v1_v2(event: OrderCreatedV1) -> OrderCreatedV2:
    """v1 came only from the storefront, had no customer id, and numbered its lines by position."""
    return OrderCreatedV2(
        order_id=event.order_id,
        channel="storefront",
        customer=Customer(email=event.email),
        currency=event.currency,
        lines=[
            OrderLine(line_id=str(position), sku=item.sku, quantity=item.qty, unit_price_minor=item.unit_price_cents)
            for position, item in enumerate(event.items, start=1)
        ],
        total_minor=event.total_cents,
    )


def _order_keys(event: OrderCreatedV2) -> dict[str, str]:
    return {"order_id": event.order_id}


_EXAMPLE_V2: dict[str, Any] = {
    "order_id": "ORD-1001",
    "channel": "storefront",
    "customer": {"customer_id": "C-77", "email": "ana@example.com", "name": "Ana Müller"},
    "ship_to": {
        "name": "Ana Müller",
        "line1": "Hauptstraße 5",
        "city": "Köln",
        "postal_code": "50667",
        "country": "DE",
    },
    "currency": "EUR",
    "lines": [{"line_id": "1", "sku": "TEE-RED-M", "quantity": 2, "unit_price_minor": 1999, "title": "T-Shirt rot"}],
    "total_minor": 3998,
}

_EXAMPLE_V1: dict[str, Any] = {
    "order_id": "ORD-0999",
    "email": "bo@example.com",
    "currency": "EUR",
    "items": [{"sku": "MUG-BLUE", "qty": 1, "unit_price_cents": 1200}],
    "total_cents": 1200,
}

ORDER_CREATED = Contract(
    name="order.created",
    flow=FLOW,
    versions={1: OrderCreatedV1, 2: OrderCreatedV2},
    upcasters={1: upcast_v1_v2},
    dedup_key=lambda event: event.order_id,
    business_keys=_order_keys,
    summary="A customer placed an order on a sales channel. Dedup key: order_id.",
    examples={1: _EXAMPLE_V1, 2: _EXAMPLE_V2},
)


class OrderCancelledV1(_Model):
    """The customer or customer service cancelled an order.

    Rules: reservations are released and the ERP is told. An order with a shipped line cannot be
    cancelled (that is a return); an unknown order is retried for a while, because the cancel may
    have overtaken its `order.created`.
    """

    order_id: Id
    reason: Annotated[str, Field(strict=True, pattern=r"^(customer_request|payment_failed|fraud|out_of_stock|other)$")]
    note: Text | None = None


ORDER_CANCELLED = Contract(
    name="order.cancelled",
    flow=FLOW,
    versions={1: OrderCancelledV1},
    upcasters={},
    dedup_key=lambda event: event.order_id,
    business_keys=_order_keys,
    summary="An order was cancelled before it shipped. Dedup key: order_id.",
    examples={1: {"order_id": "ORD-1001", "reason": "customer_request"}},
)

CONTRACTS = (ORDER_CREATED, ORDER_CANCELLED)
