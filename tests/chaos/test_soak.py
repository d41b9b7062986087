"""A soak across all six flows while workers are killed and the broker, the database and the downstreams fail.

A seeded stream of valid events (orders with stock, payments, shipments, returns, inventory, catalog),
10% of them re-published as duplicates and a few intended rejections, is published with confirms into
three `flowfleet worker` processes. Meanwhile workers are `kill -9`ed and replaced, RabbitMQ is
restarted once (`stop_app`/`start_app`), PostgreSQL once, the downstream fakes flap between 200,
503 and timeouts, and the ERP is paused and resumed once through `flowfleet downstream`. At the end every
message must be applied once or archived with a stage and reason, and every downstream effect answered
2xx once per Idempotency-Key, in order per ordering key, or be a `delivery` dead letter; no ERP request
arrives while it is paused. Size: FLOWFLEET_SOAK_MESSAGES
(default 400); tests/chaos/README.md has the full-size command.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import itertools
import json
import os
import random
import subprocess
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import unquote

import pika
import pika.exceptions
import psycopg
import pytest

from contracts.published import REGISTRY
from tests.support.delivery_accounting import out_of_order, refusals_without_a_dead_letter, sent_while_paused

pytestmark = [pytest.mark.integration, pytest.mark.soak]

MESSAGES = int(os.environ.get("FLOWFLEET_SOAK_MESSAGES", "400"))
SEED = int(os.environ.get("FLOWFLEET_SOAK_SEED") or random.SystemRandom().randrange(2**32))
#: Messages per second the publisher offers: the CI size is spread over about 30 s, so the chaos meets traffic.
RATE = float(os.environ.get("FLOWFLEET_SOAK_RATE") or max(12.0, min(100.0, MESSAGES / 30)))
WORKERS = 3
KILLS = min(12, 4 + MESSAGES // 4000)
DUPLICATE_SHARE = 0.10
EXCHANGE = "commerce.events"
SHELF, RETURNS_HUB = "BER-1", "RET-HUB"
#: Stock so generous that no order's reservation depends on which orders came first.
SHELF_STOCK = 1_000_000
#: Inventory rows start here, and no sequence of the stream's deltas can take them below zero in any order.
INVENTORY_START = 1_000
SKUS = tuple(f"SOAK-{n:02d}" for n in range(20))
#: The downstream timeout the workers run with, and how long a "timeout" phase holds each request.
DOWNSTREAM_TIMEOUT_S, HOLD_S = 1, 1.5
#: After a pause, the relays see it within their control cache (1 s) and finish what is in flight (a timeout).
PAUSE_GRACE_S = 1 + DOWNSTREAM_TIMEOUT_S + HOLD_S
#: A retry budget generous enough for events that overtake their prerequisites through every outage, with short backoff.
SOAK_ENV = {
    "FLOWFLEET_MAX_ATTEMPTS": "50",
    "FLOWFLEET_RETRY_MIN_BACKOFF_MS": "100",
    "FLOWFLEET_RETRY_MAX_BACKOFF_MS": "1500",
    "FLOWFLEET_RETRY_WINDOW_SECONDS": "1200",
    "FLOWFLEET_DELIVERY_LIMIT": "100",
    "FLOWFLEET_DOWNSTREAM_TIMEOUT_SECONDS": str(DOWNSTREAM_TIMEOUT_S),
    "FLOWFLEET_WORKER_THREADS": "4",
    **{f"FLOWFLEET_{system}_RATE_LIMIT": "0" for system in ("ERP", "CHANNELS", "NOTIFY", "PAYMENTS")},
    # FLOWFLEET_SOAK_GROUP_COMMIT=true soaks the opt-in group commit (workers.runtime.group_commit) instead.
    "FLOWFLEET_GROUP_COMMIT": os.environ.get("FLOWFLEET_SOAK_GROUP_COMMIT", "false"),
}


# -- the stream: what is published, and the end state it must leave -----------------------------------

#: (contract, version, data, intent); intent is "apply", or the stage it must be dead-lettered at.
Event = tuple[str, int, dict[str, Any], str]
Line = tuple[str, str, int, int]  # line_id, sku, quantity, unit price


@dataclass(frozen=True)
class Message:
    """One published envelope; `copy_of` names the original's message_id for a duplicate."""

    contract: str
    version: int
    data: dict[str, Any]
    intent: str
    message_id: str
    occurred_at: str
    copy_of: str | None = None

    @functools.cached_property
    def body(self) -> bytes:
        envelope = {
            "message_id": self.message_id,
            "contract": self.contract,
            "version": self.version,
            "occurred_at": self.occurred_at,
            "producer": "soak",
            "correlation_id": f"soak-{SEED}",
            "data": self.data,
        }
        return json.dumps(envelope, ensure_ascii=False).encode("utf-8")

    @functools.cached_property
    def key(self) -> str | None:
        """The dedup key the fleet derives (None for data the contract refuses)."""
        if self.intent == "contract":
            return None
        contract = REGISTRY.get(self.contract)
        return contract.dedup_key(contract.parse(self.version, self.data))


@dataclass
class Expected:
    """The end state the stream must leave, whatever order the fleet handled it in."""

    orders: dict[str, str] = field(default_factory=dict)
    lines: dict[tuple[str, str], tuple[str, int, int, int]] = field(default_factory=dict)
    payments: dict[str, tuple[str, int, int, int, str]] = field(default_factory=dict)
    operations: set[tuple[str, str, int]] = field(default_factory=set)
    shipments: dict[str, str] = field(default_factory=dict)
    returns: dict[str, tuple[str, int]] = field(default_factory=dict)
    #: (sku, location) -> [on hand, reserved, quarantined, return-pending]
    stock: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    #: (sku, location) -> (on hand, last sequence)
    inventory: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)
    prices: dict[tuple[str, str], int] = field(default_factory=dict)
    products: dict[str, int] = field(default_factory=dict)
    #: Idempotency-Keys that must be applied downstream exactly once ...
    required_keys: set[str] = field(default_factory=set)
    #: ... and those that may be, at most once (sent only if availability changed, or not stale on arrival).
    optional_keys: set[str] = field(default_factory=set)


class Stream:
    """Builds the stream from one seed: stories of orders, series of stock, price and product events."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.expected = Expected()
        self.expected.stock = {(sku, SHELF): [SHELF_STOCK, 0, 0, 0] for sku in SKUS}
        self.count = 0

    def next_unit(self) -> list[Event]:
        self.count += 1
        n = self.count
        builders: list[tuple[Callable[[int], list[Event]], float]] = [
            (self.sale, 30),
            (self.returned_sale, 18),
            (self.partial_shipment, 8),
            (self.cancellation, 8),
            (self.declined_payment, 6),
            (self.inventory_series, 12),
            (self.price_series, 6),
            (self.product_series, 6),
        ]
        build = self.rng.choices([b for b, _ in builders], weights=[w for _, w in builders])[0]
        return build(n)

    # -- orders and what follows them --------------------------------------------------------------

    def _lines(self, count: int, max_quantity: int = 3) -> list[Line]:
        skus = self.rng.sample(SKUS, count)
        return [
            (str(i), sku, self.rng.randint(1, max_quantity), self.rng.randrange(500, 5_000, 50))
            for i, sku in enumerate(skus, start=1)
        ]

    def _place(self, order_id: str, lines: list[Line], currency: str = "EUR") -> Event:
        for _, sku, quantity, _ in lines:
            self.expected.stock[sku, SHELF][1] += quantity
            self.expected.required_keys.add(f"atp:order.created:{order_id}:{sku}")
        self.expected.required_keys.add(f"order-export:{order_id}")
        for line_id, _, _, _ in lines:
            self.expected.lines[order_id, line_id] = ("reserved", 0, 0, 0)
        self.expected.orders[order_id] = "reserved"
        return "order.created", 2, self._order_data(order_id, lines, currency), "apply"

    def _order_data(self, order_id: str, lines: list[Line], currency: str = "EUR") -> dict[str, Any]:
        return {
            "order_id": order_id,
            "channel": self.rng.choice(["storefront", "marketplace:amazon", "marketplace:zalando_de"]),
            "customer": {"customer_id": f"C-{order_id}", "email": f"{order_id.lower()}@example.com", "name": "Zoë"},
            "currency": currency,
            "lines": [
                {"line_id": line_id, "sku": sku, "quantity": quantity, "unit_price_minor": price}
                for line_id, sku, quantity, price in lines
            ],
            "total_minor": sum(quantity * price for _, _, quantity, price in lines),
        }

    def _authorize(self, payment_id: str, order_id: str, amount: int) -> list[Event]:
        self.expected.payments[payment_id] = ("EUR", amount, 0, 0, "authorized")
        events: list[Event] = [
            (
                "payment.authorized",
                1,
                {"payment_id": payment_id, "order_id": order_id, "amount_minor": amount, "currency": "EUR"},
                "apply",
            )
        ]
        if self.rng.random() < 0.08:  # an intended business rejection: a capture in another currency
            bad = {
                "capture_id": f"CAP-BAD-{payment_id}",
                "payment_id": payment_id,
                "order_id": order_id,
                "amount_minor": amount,
                "currency": "USD",
            }
            events.append(("payment.captured", 1, bad, "handler"))
        return events

    def _ship(self, shipment_id: str, order_id: str, lines: list[tuple[str, str, int]]) -> Event:
        for line_id, sku, quantity in lines:
            status, shipped, delivered, asked = self.expected.lines[order_id, line_id]
            self.expected.lines[order_id, line_id] = (status, shipped + quantity, delivered, asked)
            self.expected.stock[sku, SHELF][0] -= quantity
            self.expected.stock[sku, SHELF][1] -= quantity
        self.expected.shipments[shipment_id] = "dispatched"
        self.expected.required_keys.add(f"notify:shipment-dispatched:{shipment_id}")
        data = {
            "shipment_id": shipment_id,
            "order_id": order_id,
            "location": SHELF,
            "carrier": "DHL",
            "tracking_number": f"TRK-{shipment_id}",
            "lines": [{"line_id": line_id, "quantity": quantity} for line_id, _, quantity in lines],
        }
        return "shipment.dispatched", 1, data, "apply"

    def _deliver(self, shipment_id: str, order_id: str, lines: list[tuple[str, str, int]]) -> Event:
        for line_id, _, quantity in lines:
            status, shipped, delivered, asked = self.expected.lines[order_id, line_id]
            self.expected.lines[order_id, line_id] = (status, shipped, delivered + quantity, asked)
        self.expected.shipments[shipment_id] = "delivered"
        self.expected.required_keys.add(f"notify:shipment-delivered:{shipment_id}")
        data = {"shipment_id": shipment_id, "order_id": order_id, "delivered_at": "2026-11-24T14:03:00Z"}
        return "shipment.delivered", 1, data, "apply"

    def sale(self, n: int) -> list[Event]:
        """Placed, authorized, captured (whole or in two parts), shipped (whole or split) and delivered."""
        return self._sale(n)[0]

    def _sale(self, n: int) -> tuple[list[Event], str, str, list[Line]]:
        order_id, payment_id = f"ORD-{n:06d}", f"PAY-{n:06d}"
        lines = self._lines(self.rng.choice([1, 2]))
        total = sum(quantity * price for _, _, quantity, price in lines)
        events = [self._place(order_id, lines), *self._authorize(payment_id, order_id, total)]
        first = self.rng.randint(1, total - 1)
        parts = [total] if self.rng.random() < 0.5 else [first, total - first]
        for k, amount in enumerate(parts, start=1):
            capture: dict[str, Any] = {
                "capture_id": f"CAP-{n:06d}-{k}",
                "payment_id": payment_id,
                "order_id": order_id,
                "amount_minor": amount,
                "currency": "EUR",
            }
            events.append(("payment.captured", 1, capture, "apply"))
            self.expected.operations.add(("capture", capture["capture_id"], amount))
            self.expected.required_keys.add(f"payment-capture:{capture['capture_id']}")
        self.expected.payments[payment_id] = ("EUR", total, total, 0, "captured")
        shipped = [(line_id, sku, quantity) for line_id, sku, quantity, _ in lines]
        parcels = [[line] for line in shipped] if len(shipped) > 1 and self.rng.random() < 0.5 else [shipped]
        ids = [f"SHP-{n:06d}-{k}" for k in range(1, len(parcels) + 1)]
        events += [self._ship(shipment_id, order_id, parcel) for shipment_id, parcel in zip(ids, parcels, strict=True)]
        events += [
            self._deliver(shipment_id, order_id, parcel) for shipment_id, parcel in zip(ids, parcels, strict=True)
        ]
        for line_id, _, quantity, _ in lines:
            self.expected.lines[order_id, line_id] = ("shipped", quantity, quantity, 0)
        self.expected.orders[order_id] = "delivered"
        return events, order_id, payment_id, lines

    def returned_sale(self, n: int) -> list[Event]:
        """A delivered sale whose every unit comes back (sellable or damaged), refunded less a fee."""
        events, order_id, payment_id, lines = self._sale(n)
        rma_id, receipt_id, refund_id = f"RMA-{n:06d}", f"RCV-{n:06d}", f"REF-{n:06d}"
        total = sum(quantity * price for _, _, quantity, price in lines)
        fee = self.rng.choice([0, 0, 100, 250])
        conditions = {line_id: self.rng.choice(["sellable", "damaged"]) for line_id, _, _, _ in lines}
        request = {
            "rma_id": rma_id,
            "order_id": order_id,
            "location": RETURNS_HUB,
            "lines": [{"line_id": line_id, "quantity": quantity} for line_id, _, quantity, _ in lines],
        }
        receipt = {
            "receipt_id": receipt_id,
            "rma_id": rma_id,
            "order_id": order_id,
            "lines": [
                {"line_id": line_id, "quantity": quantity, "condition": conditions[line_id]}
                for line_id, _, quantity, _ in lines
            ],
            "adjustment_minor": fee,
        }
        refund = {
            "refund_id": refund_id,
            "payment_id": payment_id,
            "order_id": order_id,
            "amount_minor": total - fee,
            "currency": "EUR",
            "rma_id": rma_id,
        }
        events += [
            ("return.requested", 1, request, "apply"),
            ("return.received", 1, receipt, "apply"),
            ("payment.refunded", 1, refund, "apply"),
        ]
        for line_id, sku, quantity, _ in lines:
            self.expected.lines[order_id, line_id] = ("shipped", quantity, quantity, quantity)
            hub = self.expected.stock.setdefault((sku, RETURNS_HUB), [0, 0, 0, 0])
            hub[0] += quantity
            if conditions[line_id] == "damaged":
                hub[2] += quantity
            else:
                self.expected.required_keys.add(f"atp:return.received:{receipt_id}:{sku}")
        self.expected.returns[rma_id] = ("received", total - fee)
        self.expected.payments[payment_id] = ("EUR", total, total, total - fee, "refunded" if fee == 0 else "captured")
        self.expected.operations.add(("refund", refund_id, total - fee))
        self.expected.required_keys |= {f"return-refund:{receipt_id}", f"payment-refund:{refund_id}"}
        return events

    def partial_shipment(self, n: int) -> list[Event]:
        """One unit of three ships; the order stays partially shipped with two units reserved."""
        order_id, payment_id = f"ORD-{n:06d}", f"PAY-{n:06d}"
        [(line_id, sku, _, price)] = self._lines(1)
        lines = [(line_id, sku, 3, price)]
        events = [self._place(order_id, lines), *self._authorize(payment_id, order_id, 3 * price)]
        events.append(self._ship(f"SHP-{n:06d}-1", order_id, [(line_id, sku, 1)]))
        self.expected.lines[order_id, line_id] = ("reserved", 1, 0, 0)
        self.expected.orders[order_id] = "partially_shipped"
        return events

    def cancellation(self, n: int) -> list[Event]:
        """Placed, authorized, then cancelled: every reservation is released."""
        order_id, payment_id = f"ORD-{n:06d}", f"PAY-{n:06d}"
        lines = self._lines(self.rng.choice([1, 2]))
        total = sum(quantity * price for _, _, quantity, price in lines)
        events = [self._place(order_id, lines), *self._authorize(payment_id, order_id, total)]
        events.append(("order.cancelled", 1, {"order_id": order_id, "reason": "customer_request"}, "apply"))
        for line_id, sku, quantity, _ in lines:
            self.expected.stock[sku, SHELF][1] -= quantity
            self.expected.lines[order_id, line_id] = ("cancelled", 0, 0, 0)
            self.expected.required_keys.add(f"atp:order.cancelled:{order_id}:{sku}")
        self.expected.required_keys.add(f"order-cancel:{order_id}")
        self.expected.orders[order_id] = "cancelled"
        return events

    def declined_payment(self, n: int) -> list[Event]:
        """A legacy (v1) order in pounds whose card is declined: the order stays reserved."""
        order_id, payment_id = f"ORD-{n:06d}", f"PAY-{n:06d}"
        sku, quantity = self.rng.choice(SKUS), self.rng.randint(1, 3)
        order = {
            "order_id": order_id,
            "email": f"{order_id.lower()}@example.com",
            "currency": "GBP",
            "items": [{"sku": sku, "qty": quantity, "unit_price_cents": 1250}],
            "total_cents": 1250 * quantity,
        }
        failure = {"payment_id": payment_id, "order_id": order_id, "operation": "authorization", "code": "declined"}
        self.expected.stock[sku, SHELF][1] += quantity
        self.expected.lines[order_id, "1"] = ("reserved", 0, 0, 0)
        self.expected.orders[order_id] = "reserved"
        self.expected.payments[payment_id] = ("GBP", 0, 0, 0, "failed")
        self.expected.required_keys |= {
            f"order-export:{order_id}",
            f"atp:order.created:{order_id}:{sku}",
            f"notify:payment-failed:{payment_id}:authorization",
        }
        return [("order.created", 1, order, "apply"), ("payment.failed", 1, failure, "apply")]

    def invalid_order(self, n: int) -> list[Event]:
        """An intended contract rejection: an order line with a negative quantity."""
        data = self._order_data(f"ORD-BAD-{n:06d}", self._lines(1))
        data["lines"][0]["quantity"] = -1
        return [("order.created", 2, data, "contract")]

    # -- series with sequences and newest-wins -----------------------------------------------------

    def inventory_series(self, n: int) -> list[Event]:
        """Adjustments and counts of one SKU at one warehouse, increasing sequences, ending with a count."""
        sku, location = f"INV-{n:06d}", f"WH-{n % 4 + 1}"
        events: list[Event] = []
        steps = self.rng.randint(3, 6)
        for sequence in range(1, steps + 1):
            if sequence < steps and self.rng.random() < 0.6:
                delta = self.rng.choice([n for n in range(-20, 31) if n])
                reason = "receipt" if delta > 0 else self.rng.choice(["sale", "damage", "cycle_count_correction"])
                data = {"sku": sku, "location": location, "delta": delta, "reason": reason, "sequence": sequence}
                events.append(("inventory.adjusted", 1, data, "apply"))
            else:
                on_hand = self.rng.randint(500, 1_500)
                data = {"sku": sku, "location": location, "on_hand": on_hand, "sequence": sequence}
                events.append(("inventory.counted", 1, data, "apply"))
            contract = events[-1][0]
            self.expected.optional_keys.add(f"atp:{contract}:{sku}@{location}#{sequence}:{sku}")
        self.expected.inventory[sku, location] = (events[-1][2]["on_hand"], steps)
        return events

    def price_series(self, n: int) -> list[Event]:
        """Price changes of one SKU, each effective later than the one before: the last one wins."""
        sku, currency = f"PRC-{n:06d}", self.rng.choice(["EUR", "GBP"])
        events: list[Event] = []
        start = datetime(2026, 12, 1, tzinfo=UTC)
        for step in range(self.rng.randint(2, 4)):
            effective = (start + timedelta(hours=step)).isoformat()
            amount = self.rng.randrange(500, 5_000, 50)
            data = {"sku": sku, "currency": currency, "amount_minor": amount, "effective_at": effective}
            events.append(("price.changed", 1, data, "apply"))
            self.expected.optional_keys.add(f"price:{sku}:{currency}:{effective}")
            self.expected.prices[sku, currency] = amount
        self.expected.required_keys.add(f"price:{sku}:{currency}:{events[-1][2]['effective_at']}")
        return events

    def product_series(self, n: int) -> list[Event]:
        """Revisions of one product: the highest one wins."""
        sku = f"PRD-{n:06d}"
        revisions = self.rng.randint(2, 4)
        events: list[Event] = []
        for revision in range(1, revisions + 1):
            data = {"sku": sku, "revision": revision, "title": f"Tasse «{sku}» r{revision}", "attributes": {"r": "1"}}
            events.append(("product.updated", 1, data, "apply"))
            self.expected.optional_keys.add(f"product:{sku}:{revision}")
        self.expected.products[sku] = revisions
        self.expected.required_keys.add(f"product:{sku}:{revisions}")
        return events


@dataclass
class Plan:
    messages: list[Message]
    expected: Expected

    @property
    def originals(self) -> list[Message]:
        return [m for m in self.messages if m.copy_of is None]


def build_plan(seed: int, size: int) -> Plan:
    """`size` messages: units interleaved with each unit's events in order, then 10% duplicates placed later."""
    rng = random.Random(seed)
    stream = Stream(rng)
    duplicates = round(size * DUPLICATE_SHARE)
    # Intended contract rejections, one per 200 messages (at least two), then units up to the size.
    units: list[list[Event]] = [stream.invalid_order(n) for n in range(1, max(2, size // 200) + 1)]
    while sum(map(len, units)) < size - duplicates:
        units.append(stream.next_unit())
    rng.shuffle(units)
    occurred_at = (datetime.now(UTC) - timedelta(seconds=5)).isoformat()

    def message(event: Event, copy_of: str | None = None) -> Message:
        contract, version, data, intent = event
        message_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        return Message(contract, version, data, intent, message_id, occurred_at, copy_of)

    # A few units in flight at a time: each unit's events stay in order and close together.
    pending = collections.deque(units)
    active: list[collections.deque[Event]] = []
    ordered: list[Message] = []
    while pending or active:
        while pending and len(active) < 25:
            active.append(collections.deque(pending.popleft()))
        unit = rng.choice(active)
        ordered.append(message(unit.popleft()))
        if not unit:
            active.remove(unit)
    placed: list[tuple[float, Message]] = [(float(i), m) for i, m in enumerate(ordered)]
    for i in rng.sample(range(len(ordered)), min(duplicates, len(ordered))):
        original = ordered[i]
        event = (original.contract, original.version, original.data, original.intent)
        placed.append((rng.uniform(i + 0.5, len(ordered)), message(event, copy_of=original.message_id)))
    placed.sort(key=lambda item: item[0])
    return Plan([m for _, m in placed], stream.expected)


# -- the services: restarts, and making sure they are back ------------------------------------------


def _run(*command: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=check)


def _pg_cluster() -> str:
    return sorted(os.listdir("/etc/postgresql"))[-1]


def rabbitmq_up() -> bool:
    try:
        return _run("rabbitmq-diagnostics", "-q", "check_port_connectivity", timeout=30, check=False).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def postgres_up() -> bool:
    return _run("pg_isready", "-q", "-h", "127.0.0.1", timeout=10, check=False).returncode == 0


def management_up() -> bool:
    request = urllib.request.Request("http://127.0.0.1:15672/api/overview")
    request.add_header("Authorization", "Basic Z3Vlc3Q6Z3Vlc3Q=")  # guest:guest
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, every: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def bring_services_back() -> None:
    """Start whatever a restart left stopped: the RabbitMQ app (or node) and the PostgreSQL cluster."""
    if not rabbitmq_up():
        if _run("rabbitmqctl", "-q", "start_app", timeout=120, check=False).returncode != 0:
            _run("rabbitmq-server", "-detached", check=False)
        wait_until(rabbitmq_up, 120, "RabbitMQ to come back", every=1)
    if not postgres_up():
        cluster = _pg_cluster()
        _run("pg_ctlcluster", "--skip-systemctl-redirect", cluster, "main", "start", check=False)
        wait_until(postgres_up, 60, "PostgreSQL to come back")
    wait_until(management_up, 60, "the RabbitMQ management API to answer")


@pytest.fixture
def services_restored(vhost: str, database: Any) -> Iterator[None]:
    """Torn down before the vhost and the database (which need both services): brings them back after a failure."""
    try:
        yield
    finally:
        bring_services_back()


# -- publishing, as an upstream team would: confirmed, mandatory, re-sent when unconfirmed ----------


class Publisher(threading.Thread):
    """Publishes the plan at `rate` per second; on a lost connection reconnects and re-sends the unconfirmed message."""

    def __init__(self, url: str, messages: list[Message], rate: float) -> None:
        super().__init__(name="soak-publisher", daemon=True)
        self.url, self.messages, self.rate = url, messages, rate
        #: Messages sent again because the broker did not confirm them, and the failed tries in all.
        self.confirmed = self.resent = self.failed_tries = self.reconnects = 0
        self.error: BaseException | None = None
        self.seconds = 0.0
        self._connection: pika.BlockingConnection | None = None
        self._channel: Any = None
        self._stopping = threading.Event()

    def stop(self) -> None:
        """Stop publishing (a failed test must not leave a thread re-sending into a deleted vhost)."""
        self._stopping.set()
        self.join(timeout=10)

    def run(self) -> None:
        started = time.monotonic()
        try:
            for i, message in enumerate(self.messages):
                if self._stopping.wait(max(0.0, started + i / self.rate - time.monotonic())):
                    return
                self._send(message)
                self.confirmed += 1
        except BaseException as error:  # reported by the test
            self.error = error
        finally:
            self.seconds = time.monotonic() - started
            self._drop()

    def _send(self, message: Message) -> None:
        properties = pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent, content_type="application/json")
        deadline = time.monotonic() + 180
        for tries in itertools.count():
            if tries == 1:
                self.resent += 1
            try:
                self._open().basic_publish(EXCHANGE, message.contract, message.body, properties, mandatory=True)
                return
            except (pika.exceptions.UnroutableError, pika.exceptions.NackError):
                pass  # the broker took it but could not keep it (a queue without a leader yet): send again
            except (pika.exceptions.AMQPError, OSError):
                self._drop()
            if time.monotonic() > deadline:
                raise AssertionError(f"the broker did not confirm {message.message_id} within 180 s")
            self.failed_tries += 1
            if self._stopping.wait(0.5):
                raise AssertionError("stopped before the broker confirmed every message")

    def _open(self) -> Any:
        if self._connection is None or not self._connection.is_open:
            self._connection = pika.BlockingConnection(pika.URLParameters(self.url))
            self._channel = self._connection.channel()
            self._channel.confirm_delivery()
            self.reconnects += 1
        return self._channel

    def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None and connection.is_open:
            with contextlib.suppress(pika.exceptions.AMQPError, OSError):
                connection.close()


# -- the downstream systems: flapping, and a record of every answer ----------------------------------


class Downstream:
    """Flaps the fake's default answer in phases, and records each answer the fake gave (key, status, held)."""

    #: Phase name -> (weight, shortest and longest duration in seconds).
    PHASES: ClassVar[dict[str, tuple[float, float, float]]] = {
        "200": (0.5, 1.0, 4.0),
        "503": (0.2, 0.3, 1.5),
        "timeout": (0.15, 0.3, 1.5),
        "lost 2xx": (0.15, 0.3, 1.5),
    }

    def __init__(self, fake: Any, seed: int) -> None:
        self.fake = fake
        self.rng = random.Random(seed)
        self.answers: list[tuple[str | None, int, bool]] = []
        self.phases: collections.Counter[str] = collections.Counter()
        self.phase = "200"
        #: Requests that arrived in a "lost 2xx" phase and are not answered yet: applied, the answer still held.
        self.held_after_applying = 0
        self._forced_until = 0.0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._flap, name="soak-flapper", daemon=True)
        handle = fake.handle

        def recording(path: str, key: str | None, body: Any) -> tuple[Any, int]:
            with self._lock:
                held = self.phase == "lost 2xx"
                self.held_after_applying += held
            try:
                reply, status = handle(path, key, body)
            finally:
                with self._lock:
                    self.held_after_applying -= held
            with self._lock:
                self.answers.append((key, status, bool(reply.delay)))
            return reply, status

        fake.handle = recording

    def replies(self) -> dict[str, Any]:
        reply = self.fake.reply
        return {
            "200": reply(200),
            "503": reply(503),
            "timeout": reply(503, delay=HOLD_S),  # held past the workers' timeout, not applied
            "lost 2xx": reply(200, delay=HOLD_S),  # applied, but the answer comes too late
        }

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.fake.default = self.fake.reply(200)

    def _flap(self) -> None:
        replies = self.replies()
        names = list(self.PHASES)
        while not self._stop.is_set():
            name = self.rng.choices(names, weights=[self.PHASES[n][0] for n in names])[0]
            with self._lock:
                if time.monotonic() >= self._forced_until:
                    self.fake.default, self.phase = replies[name], name
                    self.phases[name] += 1
            self._stop.wait(self.rng.uniform(*self.PHASES[name][1:]))
        with self._lock:
            self.fake.default, self.phase = replies["200"], "200"

    def force(self, name: str, seconds: float) -> None:
        """Answer in phase `name` for the next `seconds`, whatever the flapping would have chosen."""
        with self._lock:
            self.fake.default, self.phase = self.replies()[name], name
            self.phases[name] += 1
            self._forced_until = time.monotonic() + seconds

    def answer_held_after_applying(self) -> bool:
        """Whether some worker now waits for an answer the fake will send too late, the effect already applied."""
        with self._lock:
            return self.held_after_applying > 0

    def tally(self) -> dict[str, int]:
        with self._lock:
            answers = list(self.answers)
        return {
            "requests": len(answers),
            "2xx": sum(1 for _, status, held in answers if 200 <= status < 300 and not held),
            "2xx lost to a timeout": sum(1 for _, status, held in answers if 200 <= status < 300 and held),
            "409": sum(1 for _, status, _ in answers if status == 409),
            "503": sum(1 for _, status, held in answers if status == 503 and not held),
            "timeouts": sum(1 for _, _, held in answers if held),
        }

    def applied(self) -> collections.Counter[str]:
        """How many 2xx answers each Idempotency-Key got (a held 2xx was applied too)."""
        with self._lock:
            return collections.Counter(key or "" for key, status, _ in self.answers if 200 <= status < 300)

    def requested(self) -> set[str]:
        with self._lock:
            return {key or "" for key, _, _ in self.answers}


# -- the chaos ------------------------------------------------------------------------------------------


@dataclass
class Chaos:
    """Kills and replaces workers, restarts RabbitMQ and PostgreSQL; keeps a log of what it did and when."""

    start_worker: Callable[..., Any]
    flowfleet: Callable[..., Any]
    rabbit: Any
    database: Any
    downstream: Downstream
    rng: random.Random
    began: float
    running: list[Any] = field(default_factory=list)
    every_worker: list[Any] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    counts: collections.Counter[str] = field(default_factory=collections.Counter)
    #: (paused, resumed) in time.monotonic(), each through `flowfleet downstream pause|resume erp`.
    pauses: list[tuple[float, float]] = field(default_factory=list)

    def note(self, text: str) -> None:
        self.log.append(f"{time.monotonic() - self.began:6.1f} s  {text}")

    def spawn(self) -> None:
        handle = self.start_worker(**SOAK_ENV)
        self.running.append(handle)
        self.every_worker.append(handle)

    def kill_one(self) -> None:
        victim = self.rng.choice(self.running)
        victim.kill()
        self.running.remove(victim)
        self.counts["kills"] += 1
        self.note(f"kill -9 worker {victim.pid}")
        self._replace()

    def kill_one_mid_effect(self) -> None:
        """Kill while requests are held after the fake applied them: the effect done, the transaction still open."""
        self.downstream.force("lost 2xx", 3)
        deadline = time.monotonic() + 3
        while not self.downstream.answer_held_after_applying() and time.monotonic() < deadline:
            time.sleep(0.02)
        held = self.downstream.answer_held_after_applying()
        victim = self.rng.choice(self.running)
        victim.kill()
        self.running.remove(victim)
        self.counts["kills"] += 1
        self.counts["kills while answers were held"] += held
        self.note(f"kill -9 worker {victim.pid}" + (" while downstream answers were held after applying" * held))
        self._replace()

    def pause_erp(self) -> None:
        """A maintenance window through the CLI: the ERP is paused for a few seconds, then resumed."""
        self._operate("pause", "erp", "--reason", "soak: ERP maintenance window")
        paused = time.monotonic()
        self.note("flowfleet downstream pause erp")
        try:
            time.sleep(self.rng.uniform(4, 8))
        finally:
            # The window ends when the resume starts: it commits before its process exits, and starting a
            # CLI process on loaded cores takes seconds, in which the relays rightly send again.
            resuming = time.monotonic()
            self._operate("resume", "erp", "--reason", "soak: maintenance over")
        self.pauses.append((paused, resuming))
        self.counts["ERP pauses"] += 1
        self.note(f"flowfleet downstream resume erp after {time.monotonic() - paused:.1f} s")

    def _operate(self, *args: str) -> None:
        done = self.flowfleet("downstream", *args)
        assert done.returncode == 0, f"flowfleet downstream {' '.join(args)} failed: {done.stdout}{done.stderr}"

    def _replace(self) -> None:
        self.spawn()
        self.note(f"replacement worker {self.running[-1].pid} consuming")

    def restart_broker(self) -> None:
        self.note("rabbitmqctl stop_app")
        stopped = time.monotonic()
        try:
            _run("rabbitmqctl", "-q", "stop_app", timeout=120)
            time.sleep(self.rng.uniform(1, 3))
        finally:
            _run("rabbitmqctl", "-q", "start_app", timeout=120)
        # Each probe starts an Erlang VM (rabbitmq-diagnostics): on 2 loaded cores that alone can take 30 s.
        wait_until(rabbitmq_up, 300, "RabbitMQ after start_app", every=2)
        self.note(f"rabbitmqctl start_app done; RabbitMQ down {time.monotonic() - stopped:.1f} s")
        # Quorum queues elect their leaders, then every flow gets its consumers back.
        wait_until(self._consumed, 90, "every flow queue to be consumed again", every=1)
        self.counts["broker restarts"] += 1
        self.note("every flow queue has consumers again")

    def _consumed(self) -> bool:
        try:
            return all(self.rabbit.queue_state(flow)[1] > 0 for flow in FLOWS)
        except (pika.exceptions.AMQPError, OSError):
            return False

    def restart_postgres(self) -> None:
        cluster = _pg_cluster()
        self.note("PostgreSQL stop")
        stopped = time.monotonic()
        try:
            _run("pg_ctlcluster", "--skip-systemctl-redirect", cluster, "main", "stop", timeout=120)
            time.sleep(self.rng.uniform(1, 3))
        finally:
            _run("pg_ctlcluster", "--skip-systemctl-redirect", cluster, "main", "start", timeout=120)
        wait_until(postgres_up, 60, "PostgreSQL after start")
        self.database.close()  # its connection died with the server
        self.counts["PostgreSQL restarts"] += 1
        self.note(f"PostgreSQL accepting connections again; down {time.monotonic() - stopped:.1f} s")

    def run(self, window: float, publisher: Publisher) -> None:
        """Each action at a random moment of the window, one after the other."""
        kills = [self.kill_one, self.kill_one_mid_effect] * (KILLS // 2) + [self.kill_one] * (KILLS % 2)
        actions: list[Callable[[], None]] = [*kills, self.restart_broker, self.restart_postgres, self.pause_erp]
        self.rng.shuffle(actions)
        moments = sorted(self.rng.uniform(0.1, 0.9) * window for _ in actions)
        for moment, action in zip(moments, actions, strict=True):
            time.sleep(max(0.0, self.began + moment - time.monotonic()))
            assert publisher.error is None, f"the publisher failed: {publisher.error!r}"
            action()


FLOWS = ("orders", "inventory", "payments", "fulfillment", "returns", "catalog")


# -- waiting, and reading the end state ------------------------------------------------------------------


def queued(vhost_name: str) -> int:
    """Messages in every queue of the vhost, ready or unacked (a delayed retry waits unacked), read live."""
    listing = _run(
        "rabbitmqctl", "-q", "list_queues", "-p", vhost_name, "name", "messages", "--formatter", "json", timeout=60
    )
    return sum(int(queue.get("messages") or 0) for queue in json.loads(listing.stdout or "[]"))


def read(database: Any, sql: str) -> list[dict[str, Any]]:
    """Rows, reconnecting once if the test's own connection died with a database restart."""
    try:
        return list(database.rows(sql))
    except psycopg.OperationalError:
        database.close()
        return list(database.rows(sql))


def unaccounted(plan: Plan, database: Any) -> list[Message]:
    applied = {(row["contract"], row["dedup_key"]) for row in read(database, "SELECT * FROM processed_events")}
    archived = {row["message_id"] for row in read(database, "SELECT message_id FROM dead_letters")}
    return [
        m
        for m in plan.messages
        if m.message_id not in archived and not (m.intent == "apply" and (m.contract, m.key) in applied)
    ]


def settle(plan: Plan, database: Any, vhost_name: str, timeout: float) -> None:
    """Wait until every message is applied or archived, no queue holds anything, and the relay has sent every
    delivery the effects recorded (twice in a row): effects reach their systems after the commit now."""
    deadline = time.monotonic() + timeout
    quiet = 0
    while quiet < 2:
        missing = unaccounted(plan, database)
        depth = queued(vhost_name) if not missing else -1
        backlog = pending_deliveries(database) if not missing and depth == 0 else -1
        quiet = quiet + 1 if not missing and depth == 0 and backlog == 0 else 0
        if time.monotonic() > deadline:
            sample = [(m.contract, m.key, m.message_id) for m in missing[:10]]
            raise AssertionError(
                f"after {timeout:.0f} s, {len(missing)} messages are neither applied nor archived "
                f"(first: {sample}); {queued(vhost_name)} messages still queued; "
                f"{pending_deliveries(database)} deliveries still pending"
            )
        time.sleep(1)


def pending_deliveries(database: Any) -> int:
    """Deliveries recorded but not yet confirmed by their system (nor dead-lettered)."""
    return int(read(database, "SELECT count(*) AS n FROM deliveries WHERE status = 'pending'")[0]["n"])


def end_state(database: Any) -> Expected:
    """The same shape as Expected, read from the store."""
    found = Expected()
    for row in read(database, "SELECT order_id, status FROM orders"):
        found.orders[row["order_id"]] = row["status"]
    for row in read(database, "SELECT * FROM order_lines"):
        state = (row["status"], row["shipped"], row["delivered"], row["return_requested"])
        found.lines[row["order_id"], row["line_id"]] = state
    for row in read(database, "SELECT * FROM payments"):
        found.payments[row["payment_id"]] = (
            row["currency"],
            row["authorized_minor"],
            row["captured_minor"],
            row["refunded_minor"],
            row["status"],
        )
    for row in read(database, "SELECT kind, operation_id, amount_minor FROM payment_operations"):
        found.operations.add((row["kind"], row["operation_id"], row["amount_minor"]))
    for row in read(database, "SELECT shipment_id, status FROM shipments"):
        found.shipments[row["shipment_id"]] = row["status"]
    for row in read(database, "SELECT rma_id, status, refunded_minor FROM returns"):
        found.returns[row["rma_id"]] = (row["status"], row["refunded_minor"])
    for row in read(database, "SELECT * FROM stock_levels"):
        place = (row["sku"], row["location"])
        if row["sku"].startswith("INV-"):
            found.inventory[place] = (row["on_hand"], row["last_sequence"])
        else:
            found.stock[place] = [row["on_hand"], row["reserved"], row["quarantined"], row["return_pending"]]
    for row in read(database, "SELECT sku, currency, amount_minor FROM prices"):
        found.prices[row["sku"], row["currency"]] = row["amount_minor"]
    for row in read(database, "SELECT sku, revision FROM products"):
        found.products[row["sku"]] = row["revision"]
    return found


def differences(expected: Any, found: Any, name: str) -> list[str]:
    if expected == found:
        return []
    if isinstance(expected, dict):
        keys = sorted(set(expected) | set(found), key=str)
        wrong = [(k, expected.get(k), found.get(k)) for k in keys if expected.get(k) != found.get(k)]
        return [f"{name}: {len(wrong)} differ, e.g. " + "; ".join(f"{k}: want {w}, got {g}" for k, w, g in wrong[:5])]
    return [f"{name}: want {sorted(expected - found)[:5]} more, {sorted(found - expected)[:5]} fewer"]


# -- the soak ---------------------------------------------------------------------------------------------


@pytest.mark.timeout(max(300, 200 + MESSAGES // 15))
def test_every_message_is_applied_once_or_archived_through_kills_restarts_and_flapping_downstreams(
    worker: Callable[..., Any],
    vhost: str,
    database: Any,
    rabbit: Any,
    fake_erp: Any,
    flowfleet: Callable[..., Any],
    services_restored: None,
) -> None:
    plan = build_plan(SEED, MESSAGES)
    print(f"\nchaos soak: seed {SEED} (FLOWFLEET_SOAK_SEED={SEED} repeats this stream and schedule)")
    vhost_name = unquote(vhost.rsplit("/", 1)[1])
    began = time.monotonic()
    downstream = Downstream(fake_erp, SEED + 2)
    chaos = Chaos(worker, flowfleet, rabbit, database, downstream, random.Random(SEED + 1), began)
    for _ in range(WORKERS):
        chaos.spawn()
    for sku in SKUS:
        database.seed_stock(sku, SHELF, SHELF_STOCK)
    for sku, location in plan.expected.inventory:
        database.seed_stock(sku, location, INVENTORY_START)

    publisher = Publisher(vhost, plan.messages, RATE)
    window = max(30.0, len(plan.messages) / RATE)
    chaos.began = began = time.monotonic()
    downstream.start()
    publisher.start()
    try:
        chaos.run(window, publisher)
        publisher.join(timeout=window + 300)
    finally:
        publisher.stop()
        downstream.stop()
        bring_services_back()
    assert not publisher.is_alive(), "the publisher did not finish"
    assert publisher.error is None, f"the publisher failed: {publisher.error!r}"
    assert publisher.confirmed == len(plan.messages), f"{publisher.confirmed} of {len(plan.messages)} confirmed"
    chaos.note(
        f"chaos over; all {publisher.confirmed} messages were confirmed after {publisher.seconds:.1f} s; "
        "downstream healthy from now on"
    )
    try:
        settle(plan, database, vhost_name, timeout=120 + len(plan.messages) * 0.05)
    except AssertionError as stalled:
        report = account(plan, database, downstream, chaos, publisher, time.monotonic() - began)
        raise AssertionError(f"{stalled}\n" + "\n".join(report.problems) + "\n" + report.text) from None
    settled = time.monotonic() - began
    chaos.note("every message accounted for, every queue empty")
    exited = [w.pid for w in chaos.running if w.process.poll() is not None]
    for handle in chaos.running:
        handle.stop()

    report = account(plan, database, downstream, chaos, publisher, settled)
    print(report.text)
    assert not report.problems, "\n".join(report.problems) + "\n" + report.text
    assert not exited, f"workers {exited} exited by themselves during the soak"
    assert rabbitmq_up() and postgres_up() and management_up(), "a service was left down"


@dataclass
class Report:
    text: str
    problems: list[str]


def account(
    plan: Plan, database: Any, downstream: Downstream, chaos: Chaos, publisher: Publisher, settled: float
) -> Report:
    """Check every message, every row and every downstream effect against the plan; say what was counted."""
    problems: list[str] = []
    processed = read(database, "SELECT contract, dedup_key FROM processed_events")
    archived = read(database, "SELECT message_id, stage, contract, error_type, error_message FROM dead_letters")
    by_message = {row["message_id"]: row for row in archived}
    valid_keys = {(m.contract, m.key) for m in plan.messages if m.intent == "apply"}
    applied_keys = collections.Counter((row["contract"], row["dedup_key"]) for row in processed)

    # Invariant 1: applied once, or archived with a stage and reason; nothing else.
    lost = unaccounted(plan, database)
    problems += [f"LOST: {len(lost)} messages, e.g. {[(m.contract, m.key) for m in lost[:5]]}"] * bool(lost)
    doubled = [key for key, n in applied_keys.items() if n > 1]
    problems += [f"DOUBLED in processed_events: {doubled[:5]}"] * bool(doubled)
    stray = sorted(set(applied_keys) - valid_keys)
    problems += [f"applied but never meant to be: {stray[:5]}"] * bool(stray)
    missing = sorted(valid_keys - set(applied_keys))
    problems += [f"valid events not applied: {len(missing)}, e.g. {missing[:5]}"] * bool(missing)
    wrong_stage = [
        (m.contract, m.intent, by_message.get(m.message_id, {}).get("stage"))
        for m in plan.messages
        if m.intent != "apply" and by_message.get(m.message_id, {}).get("stage") != m.intent
    ]
    problems += [f"rejections not archived at their stage: {wrong_stage[:5]}"] * bool(wrong_stage)
    intended = {m.message_id for m in plan.messages if m.intent != "apply"}
    # A delivery dead letter is an accounted end for an effect (its event was applied): checked below.
    surprises = [row for row in archived if row["message_id"] not in intended and row["stage"] != "delivery"]
    described = [(r["contract"], r["stage"], r["error_message"][:200]) for r in surprises[:5]]
    problems += [f"dead-lettered valid messages: {len(surprises)}, e.g. {described}"] * bool(surprises)
    unexplained = [row for row in archived if not row["stage"] or not row["error_message"]]
    problems += [f"dead letters without a stage or reason: {unexplained[:3]}"] * bool(unexplained)

    # The store agrees with the plan, whatever order the fleet handled it in.
    expected, found = plan.expected, end_state(database)
    for name in ("orders", "lines", "payments", "operations", "shipments", "returns", "stock", "inventory"):
        problems += differences(getattr(expected, name), getattr(found, name), name)
    problems += differences(expected.prices, found.prices, "prices")
    problems += differences(expected.products, found.products, "products")

    # Invariant 2 downstream: one 2xx per Idempotency-Key; every effect that must happen, happened.
    applied = downstream.applied()
    twice = [key for key, n in applied.items() if n > 1]
    problems += [f"DOUBLED downstream (two 2xx for one key): {twice[:5]}"] * bool(twice)
    refused = {
        str(row["idempotency_key"])
        for row in read(database, "SELECT idempotency_key FROM deliveries WHERE status = 'dead_lettered'")
    }
    # Availability, prices and products carry only the latest value: a newer delivery for the same SKU may
    # supersede one that had not gone out, as long as a newer one for that SKU then reached the system.
    superseded = {
        str(row["idempotency_key"])
        for row in read(database, "SELECT idempotency_key FROM deliveries WHERE status = 'superseded'")
    }
    unreplaced = read(
        database,
        "SELECT s.idempotency_key FROM deliveries s WHERE s.status = 'superseded' AND NOT EXISTS ("
        "SELECT 1 FROM deliveries d WHERE d.supersede_key = s.supersede_key AND d.id > s.id "
        "AND d.status IN ('delivered', 'dead_lettered'))",
    )
    problems += [f"superseded with no newer value delivered: {unreplaced[:5]}"] * bool(unreplaced)
    absent = sorted(expected.required_keys - set(applied) - refused - superseded)
    problems += [f"downstream effects never applied: {len(absent)}, e.g. {absent[:5]}"] * bool(absent)
    unknown = sorted(set(applied) - expected.required_keys - expected.optional_keys)
    problems += [f"downstream effects nobody asked for: {unknown[:5]}"] * bool(unknown)
    unfinished = sorted(downstream.requested() - set(applied) - expected.optional_keys - superseded)
    problems += [f"requested downstream but never applied: {unfinished[:5]}"] * bool(unfinished)

    # Delivery dimension: order per ordering key, every refusal a `delivery` dead letter, pauses honoured.
    recorded = read(database, "SELECT id, ordering_key, idempotency_key FROM deliveries")
    disordered = out_of_order(recorded, list(downstream.fake.applied))
    problems += [f"applied out of order per ordering key: {disordered[:5]}"] * bool(disordered)
    letters = read(database, "SELECT stage, headers FROM dead_letters WHERE stage = 'delivery'")
    unarchived = refusals_without_a_dead_letter(refused, letters)
    problems += [f"dead-lettered deliveries with no delivery dead letter: {unarchived[:5]}"] * bool(unarchived)
    erp_arrivals = [r.at for r in list(downstream.fake.requests) if r.system == "erp"]
    during = sent_while_paused(erp_arrivals, chaos.pauses, grace=PAUSE_GRACE_S)
    problems += [f"ERP requests while it was paused: {len(during)}"] * bool(during)

    logs = "".join(handle.log() for handle in chaos.every_worker)
    originals = plan.originals
    stages = collections.Counter(row["stage"] for row in archived)
    flows = collections.Counter(REGISTRY.get(m.contract).flow for m in originals)
    lines = [
        f"chaos soak, seed {SEED}: {len(plan.messages)} messages published in {publisher.seconds:.1f} s "
        f"({len(originals)} events + {len(plan.messages) - len(originals)} duplicates), all accounted for "
        f"{settled:.1f} s after the first",
        f"  publisher: re-sent unconfirmed {publisher.resent} (after {publisher.failed_tries} failed tries), "
        f"{publisher.reconnects} connections",
        f"  events per flow: {dict(sorted(flows.items()))}",
        f"  applied: {len(applied_keys)} dedup keys in processed_events ({len(valid_keys)} valid keys published); "
        f"orders in the store: {len(found.orders)}",
        f"  dead-lettered: {len(archived)} by stage {dict(sorted(stages.items()))} "
        f"(intended rejections published: {len(intended)})",
        f"  worker logs: {logs.count('handled in')} deliveries handled, {logs.count('retrying in')} retries, "
        f"{logs.count('changed nothing')} stale events, {logs.count('dead-lettered at stage')} dead letters",
        f"  chaos: {chaos.counts['kills']} kills ({chaos.counts['kills while answers were held']} while downstream "
        f"answers were held after applying), {chaos.counts['broker restarts']} broker restart, "
        f"{chaos.counts['PostgreSQL restarts']} PostgreSQL restart, {len(chaos.every_worker)} worker processes in all, "
        f"{chaos.counts['ERP pauses']} ERP pause ({sum(end - start for start, end in chaos.pauses):.1f} s)",
        f"  deliveries: {len(recorded)} recorded, {len(refused)} dead-lettered, {len(superseded)} superseded",
        f"  downstream phases: {dict(downstream.phases)}",
        f"  downstream answers: {downstream.tally()}; keys applied {len(applied)} "
        f"(required {len(expected.required_keys)})",
        "  timeline:",
        *(f"    {entry}" for entry in chaos.log),
    ]
    return Report("\n".join(lines), problems)
