"""The SQL catalog: the current price per SKU and currency, and the current product data per SKU."""

from __future__ import annotations

from datetime import UTC

from sqlalchemy import Connection, select, update

from handlers.catalog import Price, Product
from workers.store.tables import prices, products


class SqlCatalog:
    """Prices and products on the message's transaction; reads lock the row they return."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def price(self, sku: str, currency: str) -> Price | None:
        query = select(prices).where(prices.c.sku == sku, prices.c.currency == currency).with_for_update()
        row = self._connection.execute(query).mappings().first()
        if row is None:
            return None
        effective_at = row["effective_at"]
        if effective_at.tzinfo is None:  # SQLite keeps no zone: every time is stored in UTC
            effective_at = effective_at.replace(tzinfo=UTC)
        return Price(row["sku"], row["currency"], row["amount_minor"], effective_at)

    def save_price(self, price: Price) -> None:
        values = {"amount_minor": price.amount_minor, "effective_at": price.effective_at.astimezone(UTC)}
        changed = self._connection.execute(
            update(prices).where(prices.c.sku == price.sku, prices.c.currency == price.currency).values(values)
        )
        if changed.rowcount == 0:
            self._connection.execute(prices.insert().values(sku=price.sku, currency=price.currency, **values))

    def product(self, sku: str) -> Product | None:
        row = (
            self._connection.execute(select(products).where(products.c.sku == sku).with_for_update()).mappings().first()
        )
        if row is None:
            return None
        return Product(row["sku"], row["revision"], row["title"], row["description"], dict(row["attributes"]))

    def save_product(self, product: Product) -> None:
        values = {
            "revision": product.revision,
            "title": product.title,
            "description": product.description,
            "attributes": product.attributes,
        }
        changed = self._connection.execute(update(products).where(products.c.sku == product.sku).values(values))
        if changed.rowcount == 0:
            self._connection.execute(products.insert().values(sku=product.sku, **values))
