"""In-memory twins of the handlers' ports, so handler tests need no broker, database or network."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

from contracts.catalog import PriceChangedV1, ProductUpdatedV1
from contracts.fulfillment import ShipmentDeliveredV1, ShipmentDispatchedV1
from contracts.inventory import InventoryAdjustedV1, InventoryCountedV1
from contracts.orders import OrderCancelledV1, OrderCreatedV2
from contracts.payments import PaymentAuthorizedV1, PaymentCapturedV1, PaymentFailedV1, PaymentRefundedV1
from contracts.returns import ReturnReceivedV1, ReturnRequestedV1
from handlers.catalog import Price, Product, change_price, update_product
from handlers.fulfillment import Shipment, deliver_shipment, dispatch_shipment
from handlers.inventory import StockChanged, adjust_stock, count_stock
from handlers.order_book import Order
from handlers.orders import cancel_order, place_order
from handlers.outcomes import Stale
from handlers.payments import Payment, authorize_payment, capture_payment, fail_payment, refund_payment
from handlers.returns import Return, receive_return, request_return
from handlers.stock import StockLevel


class InMemoryStockBook:
    """Stock levels per (sku, location); `levels` lists the locations in sorted order, as the SQL book does."""

    def __init__(self, on_hand: Mapping[tuple[str, str], int] | None = None) -> None:
        self.rows: dict[tuple[str, str], StockLevel] = {
            (sku, location): StockLevel(sku, location, on_hand=quantity)
            for (sku, location), quantity in (on_hand or {}).items()
        }
        self.locked: list[list[str]] = []
        #: The SKUs of each `peek` and the (sku, location) of each `save_all`: one entry per read or write.
        self.peeked: list[list[str]] = []
        self.saved_together: list[list[tuple[str, str]]] = []

    def level(self, sku: str, location: str) -> StockLevel:
        return copy.copy(self.rows.get((sku, location)) or StockLevel(sku, location))

    def levels(self, sku: str) -> list[StockLevel]:
        return [copy.copy(level) for key, level in sorted(self.rows.items()) if key[0] == sku]

    def peek(self, skus: Iterable[str]) -> dict[str, list[StockLevel]]:
        self.peeked.append(sorted(set(skus)))
        return {sku: self.levels(sku) for sku in self.peeked[-1]}

    def save(self, level: StockLevel) -> None:
        self.rows[(level.sku, level.location)] = copy.copy(level)

    def save_all(self, levels: Iterable[StockLevel]) -> None:
        saved = list(levels)
        self.saved_together.append(sorted((level.sku, level.location) for level in saved))
        for level in saved:
            self.save(level)

    def lock(self, skus: Iterable[str]) -> None:
        self.locked.append(sorted(set(skus)))

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
    """Prices and products; a save applies only over an older one and says so, as the SQL catalog's upsert does."""

    def __init__(self) -> None:
        self.prices: dict[tuple[str, str], Price] = {}
        self.products: dict[str, Product] = {}

    def price(self, sku: str, currency: str) -> Price | None:
        return self.prices.get((sku, currency))

    def save_price(self, price: Price) -> bool:
        stored = self.prices.get((price.sku, price.currency))
        if stored is not None and price.effective_at <= stored.effective_at:
            return False
        self.prices[(price.sku, price.currency)] = price
        return True

    def product(self, sku: str) -> Product | None:
        return self.products.get(sku)

    def save_product(self, product: Product) -> bool:
        stored = self.products.get(product.sku)
        if stored is not None and product.revision <= stored.revision:
            return False
        self.products[product.sku] = product
        return True


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


class Shop:
    """One retailer's whole state in memory, with every handler wired to it the way the runtime wires it.

    `snapshot()` deep-copies every book and every downstream post, so a test can show that a
    rejected or stale event changed nothing at all.
    """

    def __init__(self, on_hand: Mapping[tuple[str, str], int] | None = None) -> None:
        self.stock = InMemoryStockBook(on_hand)
        self.orders = InMemoryOrderBook()
        self.payment_book = InMemoryPaymentBook()
        self.shipments = InMemoryShipmentBook()
        self.returns = InMemoryReturnBook()
        self.catalog = InMemoryCatalog()
        self.erp = RecordingDownstream()
        self.channels = RecordingDownstream()
        self.notify = RecordingDownstream()
        #: The payments system (the gateway), which returns ask for refunds.
        self.payments = RecordingDownstream()

    def snapshot(self) -> dict[str, Any]:
        return copy.deepcopy(
            {
                "stock": self.stock.rows,
                "orders": self.orders.orders,
                "payments": self.payment_book.payments,
                "shipments": self.shipments.shipments,
                "returns": self.returns.returns,
                "prices": self.catalog.prices,
                "products": self.catalog.products,
                "posts": {
                    name: system.posts
                    for name, system in (
                        ("erp", self.erp),
                        ("channels", self.channels),
                        ("notify", self.notify),
                        ("payments", self.payments),
                    )
                },
            }
        )

    def level(self, sku: str, location: str) -> StockLevel:
        return self.stock.level(sku, location)

    def order(self, order_id: str) -> Order:
        order = self.orders.get(order_id)
        assert order is not None, f"order {order_id} is not in the book"
        return order

    # The handlers, wired to this shop's ports.

    def place(self, event: OrderCreatedV2) -> Order:
        return place_order(event, orders=self.orders, stock=self.stock, erp=self.erp, channels=self.channels)

    def cancel(self, event: OrderCancelledV1) -> Order:
        return cancel_order(event, orders=self.orders, stock=self.stock, erp=self.erp, channels=self.channels)

    def adjust(self, event: InventoryAdjustedV1) -> StockChanged | Stale:
        return adjust_stock(event, stock=self.stock, orders=self.orders, channels=self.channels)

    def count(self, event: InventoryCountedV1) -> StockChanged | Stale:
        return count_stock(event, stock=self.stock, orders=self.orders, channels=self.channels)

    def authorize(self, event: PaymentAuthorizedV1) -> Payment:
        return authorize_payment(event, payments=self.payment_book, orders=self.orders)

    def capture(self, event: PaymentCapturedV1) -> Payment:
        return capture_payment(event, payments=self.payment_book, erp=self.erp)

    def refund(self, event: PaymentRefundedV1) -> Payment:
        return refund_payment(event, payments=self.payment_book, erp=self.erp)

    def fail(self, event: PaymentFailedV1) -> Payment:
        return fail_payment(event, payments=self.payment_book, orders=self.orders, notify=self.notify)

    def dispatch(self, event: ShipmentDispatchedV1) -> Order:
        return dispatch_shipment(
            event, orders=self.orders, stock=self.stock, shipments=self.shipments, notify=self.notify
        )

    def deliver(self, event: ShipmentDeliveredV1) -> Order:
        return deliver_shipment(event, orders=self.orders, shipments=self.shipments, notify=self.notify)

    def request_return(self, event: ReturnRequestedV1) -> Return:
        return request_return(event, orders=self.orders, stock=self.stock, returns=self.returns)

    def receive_return(self, event: ReturnReceivedV1) -> Return:
        return receive_return(
            event,
            orders=self.orders,
            stock=self.stock,
            returns=self.returns,
            payments=self.payments,
            channels=self.channels,
        )

    def change_price(self, event: PriceChangedV1) -> Price | Stale:
        return change_price(event, catalog=self.catalog, channels=self.channels)

    def update_product(self, event: ProductUpdatedV1) -> Product | Stale:
        return update_product(event, catalog=self.catalog, channels=self.channels)
