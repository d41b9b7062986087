"""Events that arrive out of order, on RabbitMQ, PostgreSQL and the HTTP fakes: the end state is the in-order one.

Each test runs one pair twice in one worker and one database, under two tags: in order (every
event awaited before the next), then reversed (the later event first; the earlier one as soon as
the later one has been retried once). The two end states, with the tags blanked out, must be equal:
rows, stock, and every request the downstream systems received.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.integration.conftest import ApplyEvent, Database, Emit, FakeErp, StartWorker, Store, WaitFor
from tests.support.integration import Metrics, wait_until

pytestmark = pytest.mark.integration

#: A retry budget that outlasts "a moment later" but runs out within seconds: ~2.3-4.6 s over 8 attempts.
MAX_ATTEMPTS = 8
RETRY_ENV = {
    "FLOWFLEET_MAX_ATTEMPTS": str(MAX_ATTEMPTS),
    "FLOWFLEET_RETRY_MIN_BACKOFF_MS": "200",
    "FLOWFLEET_RETRY_MAX_BACKOFF_MS": "800",
    "FLOWFLEET_RETRY_WINDOW_SECONDS": "30",
}
LOCATION, RETURNS = "BER-1", "RET-HUB"
IN_ORDER, REVERSED = "INORD", "REVRS"

Event = tuple[str, dict[str, Any]]


@dataclass(frozen=True)
class Ids:
    """The business ids of one run of a scenario, all carrying its tag."""

    tag: str

    def __getattr__(self, name: str) -> str:
        if name.startswith("_"):
            raise AttributeError(name)
        return f"{name.upper()}-{self.tag}"


def created(i: Ids) -> Event:
    return (
        "order.created",
        {
            "order_id": i.ord,
            "channel": "storefront",
            "customer": {"customer_id": i.cust, "email": f"{i.tag.lower()}@example.com"},
            "currency": "EUR",
            "lines": [{"line_id": "1", "sku": i.sku, "quantity": 2, "unit_price_minor": 1000}],
            "total_minor": 2000,
        },
    )


def authorized(i: Ids) -> Event:
    return "payment.authorized", {"payment_id": i.pay, "order_id": i.ord, "amount_minor": 2000, "currency": "EUR"}


def captured(i: Ids) -> Event:
    return (
        "payment.captured",
        {"capture_id": i.cap, "payment_id": i.pay, "order_id": i.ord, "amount_minor": 1500, "currency": "EUR"},
    )


def refunded(i: Ids) -> Event:
    return (
        "payment.refunded",
        {"refund_id": i.ref, "payment_id": i.pay, "order_id": i.ord, "amount_minor": 1500, "currency": "EUR"},
    )


def cancelled(i: Ids) -> Event:
    return "order.cancelled", {"order_id": i.ord, "reason": "customer_request"}


def dispatched(i: Ids) -> Event:
    return (
        "shipment.dispatched",
        {
            "shipment_id": i.shp,
            "order_id": i.ord,
            "location": LOCATION,
            "carrier": "DHL",
            "lines": [{"line_id": "1", "quantity": 2}],
        },
    )


def delivered(i: Ids) -> Event:
    return "shipment.delivered", {"shipment_id": i.shp, "order_id": i.ord, "delivered_at": "2026-11-24T14:03:00Z"}


def return_requested(i: Ids) -> Event:
    return (
        "return.requested",
        {"rma_id": i.rma, "order_id": i.ord, "location": RETURNS, "lines": [{"line_id": "1", "quantity": 2}]},
    )


def return_received(i: Ids) -> Event:
    return (
        "return.received",
        {
            "receipt_id": i.rcv,
            "rma_id": i.rma,
            "order_id": i.ord,
            "lines": [{"line_id": "1", "quantity": 2, "condition": "sellable"}],
            "adjustment_minor": 300,
        },
    )


@dataclass(frozen=True)
class Pair:
    """`earlier` then `later`, after `before` has been applied; `expect` checks the in-order end state."""

    earlier: Callable[[Ids], Event]
    later: Callable[[Ids], Event]
    before: tuple[Callable[[Ids], Event], ...] = ()
    expect: Callable[[dict[str, Any]], None] = field(default=lambda state: None)

    @property
    def id(self) -> str:
        return f"{self.earlier(Ids('x'))[0]}-then-{self.later(Ids('x'))[0]}"


def _order_status(state: dict[str, Any]) -> str:
    [order] = state["orders"]
    return str(order["status"])


def _expect_authorized(state: dict[str, Any]) -> None:
    [payment] = state["payments"]
    assert (payment["status"], payment["authorized_minor"]) == ("authorized", 2000)


def _expect_captured(state: dict[str, Any]) -> None:
    [payment] = state["payments"]
    assert (payment["status"], payment["captured_minor"]) == ("captured", 1500)
    assert [r["key"] for r in state["requests"] if r["path"] == "/payments/captures"] == ["payment-capture:CAP-<T>"]


def _expect_refunded(state: dict[str, Any]) -> None:
    [payment] = state["payments"]
    assert (payment["status"], payment["captured_minor"], payment["refunded_minor"]) == ("refunded", 1500, 1500)
    assert [r["key"] for r in state["requests"] if r["path"] == "/payments/refunds"] == ["payment-refund:REF-<T>"]


def _expect_cancelled(state: dict[str, Any]) -> None:
    assert _order_status(state) == "cancelled"
    [level] = state["stock"]
    assert (level["on_hand"], level["reserved"]) == (5, 0)
    assert any(r["path"] == "/orders/ORD-<T>/cancellation" for r in state["requests"])


def _expect_shipped(state: dict[str, Any]) -> None:
    assert _order_status(state) == "shipped"
    [level] = state["stock"]
    assert (level["on_hand"], level["reserved"]) == (3, 0)


def _expect_delivered(state: dict[str, Any]) -> None:
    assert _order_status(state) == "delivered"
    [shipment] = state["shipments"]
    assert shipment["status"] == "delivered"


def _expect_return_pending(state: dict[str, Any]) -> None:
    [rma] = state["returns"]
    assert rma["status"] == "requested"
    hub = next(level for level in state["stock"] if level["location"] == RETURNS)
    assert hub["return_pending"] == 2


def _expect_return_received(state: dict[str, Any]) -> None:
    [rma] = state["returns"]
    assert (rma["status"], rma["refunded_minor"]) == ("received", 1700)
    hub = next(level for level in state["stock"] if level["location"] == RETURNS)
    assert (hub["return_pending"], hub["on_hand"], hub["quarantined"]) == (0, 2, 0)
    [refund] = [r for r in state["requests"] if r["key"] == "return-refund:RCV-<T>"]
    assert refund["body"]["amount_minor"] == 1700


PAIRS = [
    Pair(created, authorized, expect=_expect_authorized),
    Pair(authorized, captured, before=(created,), expect=_expect_captured),
    Pair(captured, refunded, before=(created, authorized), expect=_expect_refunded),
    Pair(created, cancelled, expect=_expect_cancelled),
    Pair(created, dispatched, expect=_expect_shipped),
    Pair(dispatched, delivered, before=(created,), expect=_expect_delivered),
    Pair(delivered, return_requested, before=(created, dispatched), expect=_expect_return_pending),
    Pair(return_requested, return_received, before=(created, dispatched, delivered), expect=_expect_return_received),
]

#: Columns that differ between two runs of the same story: wall-clock times and message ids.
VOLATILE = {"placed_at", "updated_at", "applied_at", "dispatched_at", "requested_at", "processed_at", "message_id"}


def end_state(database: Database, fake_erp: FakeErp, tag: str) -> dict[str, Any]:
    """Every row and downstream request of one tagged run, with the tag replaced by <T> and volatile columns gone,
    once the relay has sent every delivery of the run (effects reach their systems after the commit)."""
    like = f"%{tag}%"
    wait_until(
        lambda: (
            not database.rows("SELECT id FROM deliveries WHERE status = 'pending' AND idempotency_key LIKE %s", like)
        ),
        what=f"the deliveries of {tag} sent",
    )
    queries = {
        "orders": ("SELECT * FROM orders WHERE order_id LIKE %s", "order_id"),
        "order_lines": ("SELECT * FROM order_lines WHERE order_id LIKE %s", "order_id, line_id"),
        "stock": ("SELECT * FROM stock_levels WHERE sku LIKE %s", "sku, location"),
        "payments": ("SELECT * FROM payments WHERE payment_id LIKE %s", "payment_id"),
        "payment_operations": ("SELECT * FROM payment_operations WHERE payment_id LIKE %s", "kind, operation_id"),
        "shipments": ("SELECT * FROM shipments WHERE shipment_id LIKE %s", "shipment_id"),
        "shipment_lines": ("SELECT * FROM shipment_lines WHERE shipment_id LIKE %s", "shipment_id, line_id"),
        "returns": ("SELECT * FROM returns WHERE rma_id LIKE %s", "rma_id"),
        "return_lines": ("SELECT * FROM return_lines WHERE rma_id LIKE %s", "rma_id, line_id"),
        "processed_events": ("SELECT * FROM processed_events WHERE dedup_key LIKE %s", "contract, dedup_key"),
    }
    state: dict[str, Any] = {
        name: [
            {k: v for k, v in row.items() if k not in VOLATILE}
            for row in database.rows(f"{sql} ORDER BY {order_by}", like)
        ]
        for name, (sql, order_by) in queries.items()
    }
    state["requests"] = sorted(
        (
            {"path": r.path, "key": r.idempotency_key, "body": r.body, "status": r.status}
            for r in list(fake_erp.requests)
            if tag in (r.idempotency_key or "")
        ),
        key=lambda r: (r["path"], r["key"] or ""),
    )
    normalized: dict[str, Any] = json.loads(json.dumps(state, default=str).replace(tag, "<T>"))
    return normalized


def _run_in_order(pair: Pair, ids: Ids, apply_event: ApplyEvent) -> None:
    for step in (*pair.before, pair.earlier, pair.later):
        apply_event(*step(ids))


@pytest.mark.parametrize("pair", PAIRS, ids=lambda pair: pair.id)
def test_a_later_event_that_arrives_first_waits_for_the_earlier_one_and_ends_as_if_in_order(
    pair: Pair,
    worker: StartWorker,
    apply_event: ApplyEvent,
    emit: Emit,
    database: Database,
    store: Store,
    fake_erp: FakeErp,
    metrics: Metrics,
    wait_for: WaitFor,
) -> None:
    worker(**RETRY_ENV, FLOWFLEET_METRICS_PORT=str(metrics.port))
    in_order, reversed_ = Ids(IN_ORDER), Ids(REVERSED)
    for ids in (in_order, reversed_):
        database.seed_stock(ids.sku, LOCATION, 5)
    _run_in_order(pair, in_order, apply_event)
    expected = end_state(database, fake_erp, IN_ORDER)
    pair.expect(expected)

    for step in pair.before:
        apply_event(*step(reversed_))
    (later_contract, later_data), (earlier_contract, earlier_data) = pair.later(reversed_), pair.earlier(reversed_)
    retried_before = metrics.value("flowfleet_messages_total", contract=later_contract, outcome="retried")
    later = emit(later_contract, later_data)
    wait_for(
        lambda: metrics.value("flowfleet_messages_total", contract=later_contract, outcome="retried") > retried_before,
        what=f"{later_contract} to be retried while its {earlier_contract} has not arrived",
    )
    assert not store.handled(later_contract, later_data)
    emit(earlier_contract, earlier_data)
    for contract, data in ((earlier_contract, earlier_data), (later_contract, later_data)):
        wait_for(
            lambda contract=contract, data=data: (
                store.handled(contract, data) or store.dead_letter(later["message_id"])
            ),
            what=f"{contract} to be applied",
        )

    assert database.dead_letters() == []
    assert end_state(database, fake_erp, REVERSED) == expected


def test_a_later_event_whose_earlier_one_never_comes_is_dead_lettered_after_the_budget_saying_what_it_waited_for(
    worker: StartWorker, emit: Emit, database: Database, store: Store, fake_erp: FakeErp, wait_for: WaitFor
) -> None:
    worker(**RETRY_ENV)

    capture = emit("payment.captured", captured(Ids("NEVER"))[1])
    delivery = emit("shipment.delivered", delivered(Ids("NEVER"))[1])

    rows = {
        row["contract"]: row
        for row in wait_for(
            lambda: len(database.dead_letters()) == 2 and database.dead_letters(),
            timeout=30,
            what="both orphans in the archive",
        )
    }
    waited_for = {
        "payment.captured": "payment PAY-NEVER is not authorized yet: the capture arrived before its authorization",
        "shipment.delivered": "shipment SHP-NEVER is not known yet: the delivery arrived before its dispatch",
    }
    for contract, sent in (("payment.captured", capture), ("shipment.delivered", delivery)):
        row = rows[contract]
        assert (row["stage"], row["message_id"], row["attempts"]) == ("handler", sent["message_id"], MAX_ATTEMPTS)
        assert f"retry budget exhausted after {MAX_ATTEMPTS} attempts" in row["error_message"]
        assert waited_for[contract] in row["error_message"]
        assert row["first_failed_at"] < row["last_failed_at"]
    assert rows["payment.captured"]["business_keys"] == {"payment_id": "PAY-NEVER", "order_id": "ORD-NEVER"}
    assert store.payment_or_none("PAY-NEVER") is None
    assert database.processed_events() == []
    assert fake_erp.requests == []
