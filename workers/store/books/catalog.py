"""The SQL catalog: the current price per SKU and currency, and the current product data per SKU."""

from __future__ import annotations

from datetime import UTC

from sqlalchemy import Connection, bindparam, select

from handlers.catalog import Price, Product
from workers.store.tables import prices, products
from workers.store.upsert import upsert_if_newer

#: Built once, bound per event: the row a price or product change reads, locked.
_PRICE = (
    select(prices).where(prices.c.sku == bindparam("sku"), prices.c.currency == bindparam("currency")).with_for_update()
)
_PRODUCT = select(products).where(products.c.sku == bindparam("sku")).with_for_update()


class SqlCatalog:
    """Prices and products on the message's transaction; reads lock the row they return.

    A write is one conditional upsert: it applies only when the price is effective later, or the
    revision is higher, than the stored row, so an older event that read no row while a newer one
    was being inserted cannot overwrite it. It returns False when the database found it stale.
    """

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def price(self, sku: str, currency: str) -> Price | None:
        row = self._connection.execute(_PRICE, {"sku": sku, "currency": currency}).mappings().first()
        if row is None:
            return None
        effective_at = row["effective_at"]
        if effective_at.tzinfo is None:  # SQLite keeps no zone: every time is stored in UTC
            effective_at = effective_at.replace(tzinfo=UTC)
        return Price(row["sku"], row["currency"], row["amount_minor"], effective_at)

    def save_price(self, price: Price) -> bool:
        values = {
            "sku": price.sku,
            "currency": price.currency,
            "amount_minor": price.amount_minor,
            "effective_at": price.effective_at.astimezone(UTC),
        }
        return upsert_if_newer(self._connection, prices, values, newer=prices.c.effective_at)

    def product(self, sku: str) -> Product | None:
        row = self._connection.execute(_PRODUCT, {"sku": sku}).mappings().first()
        if row is None:
            return None
        return Product(row["sku"], row["revision"], row["title"], row["description"], dict(row["attributes"]))

    def save_product(self, product: Product) -> bool:
        values = {
            "sku": product.sku,
            "revision": product.revision,
            "title": product.title,
            "description": product.description,
            "attributes": product.attributes,
        }
        return upsert_if_newer(self._connection, products, values, newer=products.c.revision)
