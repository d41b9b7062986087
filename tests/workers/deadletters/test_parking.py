"""No cascades: events that depend on a dead-lettered event are parked behind it, then released in order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from contracts.published import REGISTRY
from tests.support.envelopes import envelope, order_v2
from tests.support.faults import PortFaults
from tests.support.fleet_run import Cli, FleetRun
from workers.deadletters.parked_expiry import dead_letter_overdue
from workers.deadletters.replay import Replayer
from workers.deadletters.report import ReplayOptions
from workers.store.archive import parking
from workers.store.archive.records import DeadLetterFilter
from workers.store.tables import parked_events, payments

MONEY = {"payment_id": "P-1", "order_id": "ORD-1", "currency": "EUR"}


def negative_quantity(order_id: str) -> bytes:
    data = order_v2(order_id, [("MUG-BLUE", 1)], unit_price_minor=5000)
    data["lines"][0]["quantity"] = -1
    return envelope(data)


def good_order(order_id: str) -> bytes:
    return envelope(order_v2(order_id, [("MUG-BLUE", 1)], unit_price_minor=5000))


def payment_events(fleet: FleetRun) -> None:
    """An authorization and two captures of ORD-1, in that order."""
    for contract, data in (
        ("payment.authorized", {**MONEY, "amount_minor": 5000}),
        ("payment.captured", {**MONEY, "capture_id": "C-1", "amount_minor": 3000}),
        ("payment.captured", {**MONEY, "capture_id": "C-2", "amount_minor": 2000}),
    ):
        fleet.publish(envelope(data, contract=contract, version=1), routing_key=contract)
        fleet.settle()  # one at a time: the order they arrive in is the order they are parked in


def parked(fleet: FleetRun) -> list[dict[str, Any]]:
    with fleet.engine.connect() as connection:
        return [dict(r) for r in connection.execute(select(parked_events).order_by(parked_events.c.id)).mappings()]


def payment(fleet: FleetRun) -> dict[str, Any] | None:
    with fleet.engine.connect() as connection:
        row = connection.execute(select(payments).where(payments.c.payment_id == "P-1")).mappings().first()
    return None if row is None else dict(row)


def test_payments_of_a_dead_lettered_order_are_parked_behind_it_not_dead_lettered(fleet: FleetRun) -> None:
    fleet.run(negative_quantity("ORD-1"))
    [order] = fleet.dead_letters()

    payment_events(fleet)

    assert [r["contract"] for r in fleet.dead_letters()] == ["order.created"], "no cascade"
    waiting = parked(fleet)
    assert [(r["contract"], r["parent_id"], r["status"]) for r in waiting] == [
        ("payment.authorized", order["id"], "parked"),
        ("payment.captured", order["id"], "parked"),
        ("payment.captured", order["id"], "parked"),
    ]
    assert payment(fleet) is None


def test_the_corrected_resend_of_the_order_releases_the_parked_payments_in_their_order(fleet: FleetRun) -> None:
    fleet.run(negative_quantity("ORD-1"))
    payment_events(fleet)

    fleet.run(good_order("ORD-1"))
    fleet.settle()

    applied = payment(fleet)
    assert applied is not None
    assert (applied["authorized_minor"], applied["captured_minor"]) == (5000, 5000)
    assert {r["status"] for r in parked(fleet)} == {"released"}
    assert [r["status"] for r in fleet.dead_letters()] == ["resolved"]


def test_a_replay_that_applies_the_order_releases_what_waited_on_it(fleet: FleetRun, faults: PortFaults) -> None:
    faults.responder = lambda *_: 400  # the ERP refuses the order inside its handler: not applied
    fleet.run(good_order("ORD-1"))
    payment_events(fleet)
    assert len(parked(fleet)) == 3
    faults.responder = None
    [order] = fleet.dead_letters()

    class Publisher:
        def publish(self, exchange: str, routing_key: str, body: bytes, headers: dict[str, Any]) -> None:
            fleet.broker.publish(exchange, routing_key, body, headers)

    Replayer(fleet.engine, Publisher(), exchange=fleet.settings.exchange, registry=REGISTRY).start(
        DeadLetterFilter(ids=(order["id"],)), actor="ana", reason="ERP fixed", options=ReplayOptions(wait=0)
    )
    fleet.settle()
    fleet.settle()

    applied = payment(fleet)
    assert applied is not None and applied["captured_minor"] == 5000
    assert {r["status"] for r in parked(fleet)} == {"released"}


def test_a_delivery_dead_letter_parks_nothing_its_order_was_applied(fleet: FleetRun) -> None:
    fleet.erp.responder = lambda *_: 400  # refused after commit, by the relay: a `delivery` dead letter
    fleet.run(good_order("ORD-1"))
    assert [r["stage"] for r in fleet.dead_letters()] == ["delivery"]

    payment_events(fleet)

    assert parked(fleet) == []
    applied = payment(fleet)
    assert applied is not None and applied["captured_minor"] == 5000


def test_dlq_show_lists_what_is_parked_behind_a_record_and_dlq_list_parked_lists_them_all(
    fleet: FleetRun, cli: Cli
) -> None:
    fleet.run(negative_quantity("ORD-1"))
    payment_events(fleet)
    [order] = fleet.dead_letters()

    shown = cli("dlq", "show", str(order["id"]), "--json")
    listed = cli("dlq", "list", "--parked", "--json")
    text = cli("dlq", "show", str(order["id"])).out

    assert shown.code == 0, shown.err
    assert [p["contract"] for p in shown.json()["parked"]] == [
        "payment.authorized",
        "payment.captured",
        "payment.captured",
    ]
    assert listed.code == 0, listed.err
    assert [(p["parent_id"], p["contract"]) for p in listed.json()["parked"]][:1] == [
        (order["id"], "payment.authorized")
    ]
    assert "3 event(s) parked behind this record" in text


def test_the_parked_count_per_flow_is_what_the_gauge_reports(fleet: FleetRun) -> None:
    fleet.run(negative_quantity("ORD-1"))
    payment_events(fleet)

    with fleet.engine.connect() as connection:
        assert parking.parked_counts(connection) == {"payments": 3}


def test_an_event_parked_beyond_the_limit_becomes_a_dead_letter_naming_its_parent(fleet: FleetRun) -> None:
    fleet.run(negative_quantity("ORD-1"))
    payment_events(fleet)
    [order] = fleet.dead_letters()
    with fleet.engine.begin() as connection:
        connection.execute(update(parked_events).values(parked_at=datetime.now(UTC) - timedelta(hours=25)))

    created = dead_letter_overdue(fleet.engine, limit=timedelta(hours=24), queues={"payments": "payments-q"})

    assert len(created) == 3
    expired = [r for r in fleet.dead_letters() if r["id"] in created]
    assert {(r["stage"], r["error_type"], r["queue"]) for r in expired} == {("handler", "ParkedTooLong", "payments-q")}
    assert all(f"dead letter #{order['id']}" in r["error_message"] for r in expired)
    assert {r["status"] for r in parked(fleet)} == {"expired"}
    assert dead_letter_overdue(fleet.engine, limit=timedelta(hours=24), queues={}) == [], "once"
