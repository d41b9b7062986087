"""The catalog flow's contracts: a SKU's price changed, or its product data was updated."""

from __future__ import annotations

from datetime import UTC
from typing import Annotated

from pydantic import Field

from contracts.base import ContractModel
from contracts.registry import Contract
from contracts.types import Currency, MinorUnits, SequenceNumber, Sku, Text, Timestamp

FLOW = "catalog"


class PriceChangedV1(ContractModel):
    """A SKU's price in one currency, from `effective_at` on.

    The price with the latest `effective_at` wins: a change that is not newer than the current
    price's is stale and changes nothing.
    """

    sku: Sku
    currency: Currency
    amount_minor: MinorUnits
    effective_at: Timestamp


class ProductUpdatedV1(ContractModel):
    """The product data of a SKU at `revision`; a revision not above the stored one is stale."""

    sku: Sku
    revision: SequenceNumber
    title: Text
    description: Annotated[str, Field(strict=True, max_length=10_000)] = ""
    attributes: Annotated[dict[Annotated[str, Field(max_length=64)], Text], Field(max_length=100)] = Field(
        default_factory=dict
    )


PRICE_CHANGED = Contract(
    name="price.changed",
    flow=FLOW,
    versions={1: PriceChangedV1},
    upcasters={},
    dedup_key=lambda event: f"{event.sku}:{event.currency}:{event.effective_at.astimezone(UTC).isoformat()}",
    business_keys=lambda event: {"sku": event.sku},
    summary="A SKU's price changed. Dedup key: sku:currency:effective_at; an older effective_at is stale.",
    examples={1: {"sku": "TEE-RED-M", "currency": "EUR", "amount_minor": 1799, "effective_at": "2026-11-26T00:00:00Z"}},
)

PRODUCT_UPDATED = Contract(
    name="product.updated",
    flow=FLOW,
    versions={1: ProductUpdatedV1},
    upcasters={},
    dedup_key=lambda event: f"{event.sku}#{event.revision}",
    business_keys=lambda event: {"sku": event.sku},
    summary="A SKU's product data changed. Dedup key: sku#revision; an older revision is stale.",
    examples={
        1: {
            "sku": "TEE-RED-M",
            "revision": 7,
            "title": "T-Shirt rot, Größe M",
            "description": "Bio-Baumwolle, fair gehandelt.",
            "attributes": {"colour": "rot", "size": "M"},
        }
    },
)

CONTRACTS = (PRICE_CHANGED, PRODUCT_UPDATED)
