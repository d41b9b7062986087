"""In-memory twins of the orders handler's ports, so handler tests need no broker, database or network."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from contracts.orders import OrderCreatedV2
from handlers.orders import OrderPlaced


class InMemoryOrderBook:
    """Keeps every order it is given, by order id."""

    def __init__(self) -> None:
        self.orders: dict[str, tuple[OrderCreatedV2, OrderPlaced]] = {}

    def add(self, order: OrderCreatedV2, placed: OrderPlaced) -> None:
        self.orders[order.order_id] = (order, placed)


class InMemoryStockLedger:
    """Stock on hand per (sku, location); reserves a whole line at the first location (sorted) that has it."""

    def __init__(self, on_hand: Mapping[tuple[str, str], int] | None = None) -> None:
        self.on_hand: dict[tuple[str, str], int] = dict(on_hand or {})
        self.reserved: dict[tuple[str, str], int] = dict.fromkeys(self.on_hand, 0)

    def available(self, sku: str, location: str) -> int:
        key = (sku, location)
        return self.on_hand.get(key, 0) - self.reserved.get(key, 0)

    def reserve(self, sku: str, quantity: int) -> str | None:
        for stocked_sku, location in sorted(self.on_hand):
            if stocked_sku == sku and self.available(sku, location) >= quantity:
                self.reserved[(sku, location)] += quantity
                return location
        return None


class RecordingDownstream:
    """Records every effect it is sent; raises `fail_with` instead, when one is set."""

    def __init__(self, fail_with: Exception | None = None) -> None:
        self.fail_with = fail_with
        self.posts: list[tuple[str, dict[str, Any], str]] = []

    def post(self, path: str, payload: Mapping[str, Any], *, idempotency_key: str) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        self.posts.append((path, dict(payload), idempotency_key))
