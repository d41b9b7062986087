"""The outbox's SQL on SQLite: keys derived from the request, superseding, claiming heads of keys, leases, purge."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine

from handlers.errors import PermanentError
from tests.support.outbox import CAUSE, by_key, record, rows
from workers.store.outbox.claims import claim_due
from workers.store.outbox.keys import ordering_key, supersede_key
from workers.store.outbox.outcomes import mark_delivered
from workers.store.outbox.purge import purge_finished
from workers.store.outbox.recorder import OutboxRecorder
from workers.store.tables import deliveries

LEASE = timedelta(seconds=30)


def claim(
    engine: Engine, system: str, owner: str = "relay-a", *, limit: int = 10, at: datetime | None = None
) -> list[str]:
    with engine.begin() as connection:
        found = claim_due(connection, system, owner=owner, lease=LEASE, limit=limit, now=at or datetime.now(UTC))
    return [row["idempotency_key"] for row in found]


def deliver(engine: Engine, key: str, owner: str = "relay-a") -> bool:
    with engine.begin() as connection:
        return mark_delivered(connection, by_key(engine)[key]["id"], owner, datetime.now(UTC))


# -- keys -----------------------------------------------------------------------------------------------


def test_an_orders_export_and_its_cancellation_share_an_ordering_key_and_other_orders_do_not() -> None:
    export = ordering_key("erp", "/orders", {"order_id": "ORD-1", "lines": [{"sku": "MUG"}]})
    cancel = ordering_key("erp", "/orders/ORD-1/cancellation", {"order_id": "ORD-1", "reason": "x"})

    assert export == cancel == "erp:order_id=ORD-1"
    assert ordering_key("erp", "/orders", {"order_id": "ORD-2"}) != export
    assert ordering_key("notify", "/notifications", {"order_id": "ORD-1"}) != export, "keys are per system"


def test_a_capture_and_its_refund_share_a_key_and_a_request_about_a_sku_is_keyed_by_it() -> None:
    capture = {"capture_id": "CAP-1", "payment_id": "PAY-1", "order_id": "ORD-1"}
    refund = {"refund_id": "REF-1", "payment_id": "PAY-1", "order_id": "ORD-1", "rma_id": "RMA-1"}

    assert ordering_key("erp", "/payments/captures", capture) == ordering_key("erp", "/payments/refunds", refund)
    assert ordering_key("channels", "/availability", {"sku": "MUG", "available": 3}) == "channels:sku=MUG"
    assert ordering_key("erp", "/ping", {}) == "erp:/ping"


def test_only_latest_value_requests_have_a_supersede_key_naming_path_sku_and_currency() -> None:
    assert supersede_key("channels", "/availability", {"sku": "MUG", "available": 3}) == "channels:/availability:MUG"
    assert supersede_key("channels", "/prices", {"sku": "MUG", "currency": "EUR"}) == "channels:/prices:MUG:EUR"
    assert supersede_key("channels", "/prices", {"sku": "MUG"}) is None, "a price without its currency is kept"
    assert supersede_key("erp", "/orders", {"order_id": "ORD-1", "sku": "MUG"}) is None


# -- recording --------------------------------------------------------------------------------------------


def test_a_recorded_delivery_carries_the_request_its_key_and_the_event_that_caused_it(engine: Engine) -> None:
    record(engine, "erp", "/orders", {"order_id": "ORD-1", "total_minor": 1999}, "order-export:ORD-1")

    [row] = rows(engine)
    assert (row["system"], row["method"], row["path"], row["status"]) == ("erp", "POST", "/orders", "pending")
    assert row["body"] == {"order_id": "ORD-1", "total_minor": 1999}
    assert (row["idempotency_key"], row["ordering_key"], row["supersede_key"]) == (
        "order-export:ORD-1",
        "erp:order_id=ORD-1",
        None,
    )
    assert (row["flow"], row["contract"], row["version"], row["message_id"], row["dedup_key"]) == (
        "orders",
        "order.created",
        2,
        "msg-1",
        "ORD-1",
    )
    assert row["business_keys"] == {"order_id": "ORD-1"}
    assert (row["attempts"], row["lease_owner"]) == (0, None)


def test_a_delivery_rolls_back_with_its_effect(engine: Engine) -> None:
    with pytest.raises(RuntimeError), engine.begin() as connection:
        OutboxRecorder(connection, "erp", CAUSE).post("/orders", {"order_id": "ORD-1"}, idempotency_key="k")
        raise RuntimeError("the handler failed after asking for the request")

    assert rows(engine) == []


def test_a_request_json_cannot_carry_is_refused_with_the_effect_as_permanent(engine: Engine) -> None:
    with pytest.raises(PermanentError, match="cannot be sent as JSON"), engine.begin() as connection:
        OutboxRecorder(connection, "erp", CAUSE).post("/orders", {"amount": float("nan")}, idempotency_key="k")


def test_a_newer_availability_supersedes_older_unsent_ones_of_its_sku_but_not_one_in_flight(engine: Engine) -> None:
    record(engine, "channels", "/availability", {"sku": "MUG", "available": 5}, "atp:1:MUG")
    record(engine, "channels", "/availability", {"sku": "LAMP", "available": 1}, "atp:1:LAMP")
    assert claim(engine, "channels", limit=1) == ["atp:1:MUG"], "the first is in flight"
    record(engine, "channels", "/availability", {"sku": "MUG", "available": 4}, "atp:2:MUG")
    record(engine, "channels", "/availability", {"sku": "MUG", "available": 3}, "atp:3:MUG")

    statuses = {key: row["status"] for key, row in by_key(engine).items()}
    assert statuses == {
        "atp:1:MUG": "pending",  # leased: it may be on the wire, so it is not replaced
        "atp:1:LAMP": "pending",
        "atp:2:MUG": "superseded",
        "atp:3:MUG": "pending",
    }
    assert by_key(engine)["atp:2:MUG"]["finished_at"] is not None


# -- claiming ---------------------------------------------------------------------------------------------


def test_a_claim_takes_only_the_head_of_each_ordering_key_and_the_next_once_the_head_is_delivered(
    engine: Engine,
) -> None:
    record(engine, "erp", "/orders", {"order_id": "ORD-1"}, "order-export:ORD-1")
    record(engine, "erp", "/orders/ORD-1/cancellation", {"order_id": "ORD-1"}, "order-cancel:ORD-1")
    record(engine, "erp", "/orders", {"order_id": "ORD-2"}, "order-export:ORD-2")
    record(engine, "channels", "/availability", {"sku": "MUG", "available": 1}, "atp:MUG")

    assert claim(engine, "erp") == ["order-export:ORD-1", "order-export:ORD-2"]
    assert claim(engine, "erp", "relay-b") == [], "leased rows and rows behind them are not claimed twice"
    assert deliver(engine, "order-export:ORD-1")
    assert claim(engine, "erp", "relay-b") == ["order-cancel:ORD-1"]


def test_a_dead_lettered_head_holds_back_its_key_only(engine: Engine) -> None:
    record(engine, "erp", "/orders", {"order_id": "ORD-1"}, "order-export:ORD-1")
    record(engine, "erp", "/orders/ORD-1/cancellation", {"order_id": "ORD-1"}, "order-cancel:ORD-1")
    record(engine, "erp", "/orders", {"order_id": "ORD-2"}, "order-export:ORD-2")
    with engine.begin() as connection:
        connection.execute(
            deliveries.update()
            .where(deliveries.c.idempotency_key == "order-export:ORD-1")
            .values(status="dead_lettered")
        )

    assert claim(engine, "erp") == ["order-export:ORD-2"]


def test_a_lease_that_expired_is_claimed_again_and_the_old_owner_can_no_longer_settle_it(engine: Engine) -> None:
    record(engine, "erp", "/orders", {"order_id": "ORD-1"}, "order-export:ORD-1")
    assert claim(engine, "erp", "relay-a") == ["order-export:ORD-1"]

    later = datetime.now(UTC) + LEASE + timedelta(seconds=1)
    assert claim(engine, "erp", "relay-b", at=later) == ["order-export:ORD-1"]
    assert not deliver(engine, "order-export:ORD-1", "relay-a"), "relay-a lost its lease (it was presumed dead)"
    assert deliver(engine, "order-export:ORD-1", "relay-b")
    assert by_key(engine)["order-export:ORD-1"]["status"] == "delivered"


def test_a_delivery_not_yet_due_is_not_claimed(engine: Engine) -> None:
    record(engine, "erp", "/orders", {"order_id": "ORD-1"}, "order-export:ORD-1")
    with engine.begin() as connection:
        connection.execute(deliveries.update().values(next_attempt_at=datetime.now(UTC) + timedelta(minutes=5)))

    assert claim(engine, "erp") == []


# -- retention --------------------------------------------------------------------------------------------


def test_purge_removes_old_delivered_and_superseded_rows_in_batches_and_never_an_undelivered_one(
    engine: Engine,
) -> None:
    for n in range(3):
        record(engine, "erp", "/orders", {"order_id": f"ORD-{n}"}, f"order-export:ORD-{n}")
    record(engine, "erp", "/orders", {"order_id": "ORD-9"}, "order-export:ORD-9")
    long_ago = datetime.now(UTC) - timedelta(days=8)
    with engine.begin() as connection:
        connection.execute(
            deliveries.update()
            .where(deliveries.c.idempotency_key != "order-export:ORD-9")
            .values(status="delivered", finished_at=long_ago)
        )
        connection.execute(
            deliveries.update()
            .where(deliveries.c.idempotency_key == "order-export:ORD-9")
            .values(created_at=long_ago, first_failed_at=long_ago)
        )

    cutoff = datetime.now(UTC) - timedelta(days=7)
    with engine.begin() as connection:
        assert purge_finished(connection, before=cutoff, batch=2) == 2
    with engine.begin() as connection:
        assert purge_finished(connection, before=cutoff, batch=2) == 1
        assert purge_finished(connection, before=cutoff, batch=2) == 0

    assert list(by_key(engine)) == ["order-export:ORD-9"]
