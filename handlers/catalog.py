"""Prices and product data, kept newest-wins and propagated to the channels system.

Rules:
- A price is per SKU and currency. The change with the latest `effective_at` wins; a change not
  newer than the current one is stale and is not propagated. Future prices are sent on with
  their `effective_at`: the channels schedule them.
- Product data carries a revision; a revision not above the stored one is stale.
- Text is passed on as the source wrote it (UTF-8, any script).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from contracts.catalog import PriceChangedV1, ProductUpdatedV1
from handlers.downstream import Downstream
from handlers.outcomes import Stale


@dataclass(frozen=True)
class Price:
    sku: str
    currency: str
    amount_minor: int
    effective_at: datetime


@dataclass(frozen=True)
class Product:
    sku: str
    revision: int
    title: str
    description: str
    attributes: dict[str, str] = field(default_factory=dict)


class Catalog(Protocol):
    """Where current prices and product data are kept; reads lock what they return.

    The store decides newest-wins itself: a save applies only over an older row (or none) and
    returns False, changing nothing, when a price as new or newer, or a revision as high or higher,
    is stored, even one committed by a concurrent event after this one read.
    """

    def price(self, sku: str, currency: str) -> Price | None: ...

    def save_price(self, price: Price) -> bool:
        """Keep `price` unless the stored one is effective as late or later; whether it was kept."""
        ...

    def product(self, sku: str) -> Product | None: ...

    def save_product(self, product: Product) -> bool:
        """Keep `product` unless the stored revision is as high or higher; whether it was kept."""
        ...


def change_price(event: PriceChangedV1, *, catalog: Catalog, channels: Downstream) -> Price | Stale:
    current = catalog.price(event.sku, event.currency)
    stale = f"price of {event.sku} in {event.currency} effective {event.effective_at.isoformat()} is not newer"
    if current is not None and event.effective_at <= current.effective_at:
        return Stale(f"{stale} than the current one ({current.effective_at.isoformat()})")
    price = Price(event.sku, event.currency, event.amount_minor, event.effective_at)
    if not catalog.save_price(price):
        return Stale(f"{stale} than the current one, stored by a concurrent change")
    effective = event.effective_at.astimezone(UTC).isoformat()
    channels.post(
        "/prices",
        {"sku": price.sku, "currency": price.currency, "amount_minor": price.amount_minor, "effective_at": effective},
        idempotency_key=f"price:{price.sku}:{price.currency}:{effective}",
    )
    return price


def update_product(event: ProductUpdatedV1, *, catalog: Catalog, channels: Downstream) -> Product | Stale:
    current = catalog.product(event.sku)
    if current is not None and event.revision <= current.revision:
        return Stale(f"product {event.sku} revision {event.revision} is not above the stored {current.revision}")
    product = Product(event.sku, event.revision, event.title, event.description, dict(event.attributes))
    if not catalog.save_product(product):
        return Stale(f"product {event.sku} revision {event.revision} is not above the one a concurrent update stored")
    channels.post(
        "/products",
        {
            "sku": product.sku,
            "revision": product.revision,
            "title": product.title,
            "description": product.description,
            "attributes": product.attributes,
        },
        idempotency_key=f"product:{product.sku}:{product.revision}",
    )
    return product
