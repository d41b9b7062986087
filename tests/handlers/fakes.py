"""In-memory twins of the handlers' ports, so handler tests need no broker, database or network."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from handlers.catalog import Price, Product
from handlers.fulfillment import Shipment
from handlers.order_book import Order
from handlers.payments import Payment
from handlers.returns import Return
from handlers.stock import StockLevel


class InMemoryStockBook:
    """Stock levels per (sku, location); `levels` lists the locations in sorted order, as the SQL book does."""

    def __init__(self, on_hand: Mapping[tuple[str, str], int] | None = None) -> None:
        self.rows: dict[tuple[str, str], StockLevel] = {
            (sku, location): StockLevel(sku, location, on_hand=quantity)
            for (sku, location), quantity in (on_hand or {}).items()
        }

    def level(self, sku: str, location: str) -> StockLevel:
        return copy.copy(self.rows.get((sku, location)) or StockLevel(sku, location))

    def levels(self, sku: str) -> list[StockLevel]:
        return [copy.copy(level) for key, level in sorted(self.rows.items()) if key[0] == sku]

    def save(self, level: StockLevel) -> None:
        self.rows[(level.sku, level.location)] = copy.copy(level)

    def available(self, sku: str, location: str) -> int:
        return self.level(sku, location).available

    @property
    def reserved(self) -> dict[tuple[str, str], int]:
        return {key: level.reserved for key, level in self.rows.items()}


class InMemoryOrderBook:
    """Orders by id, in the order they were added (the order backorders are served in)."""

    def __init__(self) -> None:
        self.orders: dict[str, Order] = {}

    def get(self, order_id: str) -> Order | None:
        order = self.orders.get(order_id)
        return copy.deepcopy(order) if order else None

    def add(self, order: Order) -> None:
        assert order.order_id not in self.orders, "an order is added once"
        self.orders[order.order_id] = copy.deepcopy(order)

    def save(self, order: Order) -> None:
        assert order.order_id in self.orders, "only a known order is saved"
        self.orders[order.order_id] = copy.deepcopy(order)

    def backordered(self, sku: str) -> list[Order]:
        return [
            copy.deepcopy(order)
            for order in self.orders.values()
            if any(line.sku == sku and line.status == "backordered" for line in order.lines)
        ]

    def reserved_at(self, sku: str, location: str) -> list[Order]:
        return [
            copy.deepcopy(order)
            for order in reversed(self.orders.values())
            if any(line.sku == sku and line.status == "reserved" and line.location == location for line in order.lines)
        ]


class InMemoryPaymentBook:
    def __init__(self) -> None:
        self.payments: dict[str, Payment] = {}

    def get(self, payment_id: str) -> Payment | None:
        payment = self.payments.get(payment_id)
        return copy.deepcopy(payment) if payment else None

    def save(self, payment: Payment) -> None:
        self.payments[payment.payment_id] = copy.deepcopy(payment)


class InMemoryShipmentBook:
    def __init__(self) -> None:
        self.shipments: dict[str, Shipment] = {}

    def get(self, shipment_id: str) -> Shipment | None:
        shipment = self.shipments.get(shipment_id)
        return copy.deepcopy(shipment) if shipment else None

    def add(self, shipment: Shipment) -> None:
        assert shipment.shipment_id not in self.shipments, "a shipment is added once"
        self.shipments[shipment.shipment_id] = copy.deepcopy(shipment)

    def save(self, shipment: Shipment) -> None:
        self.shipments[shipment.shipment_id] = copy.deepcopy(shipment)


class InMemoryReturnBook:
    def __init__(self) -> None:
        self.returns: dict[str, Return] = {}

    def get(self, rma_id: str) -> Return | None:
        rma = self.returns.get(rma_id)
        return copy.deepcopy(rma) if rma else None

    def add(self, rma: Return) -> None:
        assert rma.rma_id not in self.returns, "an RMA is added once"
        self.returns[rma.rma_id] = copy.deepcopy(rma)

    def save(self, rma: Return) -> None:
        self.returns[rma.rma_id] = copy.deepcopy(rma)


class InMemoryCatalog:
    def __init__(self) -> None:
        self.prices: dict[tuple[str, str], Price] = {}
        self.products: dict[str, Product] = {}

    def price(self, sku: str, currency: str) -> Price | None:
        return self.prices.get((sku, currency))

    def save_price(self, price: Price) -> None:
        self.prices[(price.sku, price.currency)] = price

    def product(self, sku: str) -> Product | None:
        return self.products.get(sku)

    def save_product(self, product: Product) -> None:
        self.products[product.sku] = product


class RecordingDownstream:
    """Records every effect it is sent; raises `fail_with` instead, when one is set."""

    def __init__(self, fail_with: Exception | None = None) -> None:
        self.fail_with = fail_with
        self.posts: list[tuple[str, dict[str, Any], str]] = []

    def post(self, path: str, payload: Mapping[str, Any], *, idempotency_key: str) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        self.posts.append((path, dict(payload), idempotency_key))

    def paths(self) -> list[str]:
        return [path for path, _payload, _key in self.posts]
