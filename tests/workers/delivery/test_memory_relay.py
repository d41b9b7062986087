"""The delivery relay on SQLite with the real pipeline: outages, order per key, pause, breaker, throttling."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY as METRICS

from tests.support.envelopes import envelope, order_v2
from tests.support.fleet_run import FleetRun
from tests.support.outbox import by_key, rows
from tests.support.transactions import ConnectionsInUse
from workers.delivery.fake import FakeDownstream
from workers.fleet import relay as build_relay
from workers.store.outbox.controls import pause as pause_system
from workers.store.outbox.controls import read_control, resume

ORDERS = [f"ORD-{n}" for n in range(1, 6)]


def cancel(order_id: str) -> bytes:
    return envelope({"order_id": order_id, "reason": "customer_request"}, version=1, contract="order.cancelled")


def sample(name: str, **labels: str) -> float:
    return METRICS.get_sample_value(name, labels) or 0.0


def erp_keys(erp: FakeDownstream, *, ok_only: bool = True) -> list[str]:
    return [key for _path, key, status in erp.requests if not ok_only or 200 <= status < 300 or status == 409]


def pause(fleet: FleetRun, system: str, *, paused: bool = True) -> None:
    with fleet.engine.begin() as connection:
        if paused:
            pause_system(connection, system, actor="oncall", reason="ERP upgrade", until=None, now=datetime.now(UTC))
        else:
            resume(connection, system, actor="oncall", reason="upgrade done", now=datetime.now(UTC))
    fleet.relay.gate.forget(system)


def test_an_erp_outage_reserves_every_order_writes_no_dead_letter_and_afterwards_exports_each_once_in_order(
    fleet: FleetRun, erp: FakeDownstream
) -> None:
    down = True
    erp.responder = lambda *_: 503 if down else 200

    fleet.run(*(envelope(order_v2(order_id, [("MUG-BLUE", 1)])) for order_id in ORDERS))
    fleet.run(cancel("ORD-2"), cancel("ORD-4"))

    assert sorted(fleet.orders()) == ORDERS
    assert fleet.reserved("MUG-BLUE", "BER-1") == 3, "five reserved during the outage, two released by cancels"
    assert fleet.dead_letters() == []
    assert erp.applied == {}
    assert fleet.systems["channels"].applied, "the channels heard about availability during the ERP's outage"
    assert (fleet.tally("retried"), fleet.tally("dead_lettered")) == (0, 0)

    down = False
    time.sleep(fleet.settings.breaker_cooldown_seconds)  # the breaker opened during the outage
    fleet.deliver()

    exported = erp_keys(erp)
    assert sorted(erp.applied) == sorted(
        [f"order-export:{o}" for o in ORDERS] + ["order-cancel:ORD-2", "order-cancel:ORD-4"]
    )
    assert len(exported) == len(set(exported)) == 7, "each export and cancel exactly once"
    for order_id in ("ORD-2", "ORD-4"):
        assert exported.index(f"order-export:{order_id}") < exported.index(f"order-cancel:{order_id}")
    assert {row["status"] for row in rows(fleet.engine) if row["system"] == "erp"} == {"delivered"}


def test_the_breaker_opens_after_consecutive_failures_claims_nothing_while_open_and_one_probe_closes_it(
    fleet: FleetRun, erp: FakeDownstream, caplog: pytest.LogCaptureFixture
) -> None:
    down = True
    erp.responder = lambda *_: 503 if down else 200
    opened_before = sample("flowfleet_downstream_breaker_transitions_total", system="erp", state="opened")
    closed_before = sample("flowfleet_downstream_breaker_transitions_total", system="erp", state="closed")
    caplog.set_level(logging.INFO, logger="flowfleet.delivery")

    fleet.run(*(envelope(order_v2(order_id, [("MUG-BLUE", 1)])) for order_id in ORDERS))

    threshold = fleet.settings.breaker_threshold
    assert len(erp.requests) == threshold, "after the 5th consecutive failure the relay stopped sending"
    with fleet.engine.connect() as connection:
        assert read_control(connection, "erp").breaker == "open"
    spent = sum(row["attempts"] for row in rows(fleet.engine) if row["system"] == "erp")
    fleet.deliver(timeout=0.5)
    assert len(erp.requests) == threshold, "nothing is claimed while the breaker is open"
    assert sum(row["attempts"] for row in rows(fleet.engine) if row["system"] == "erp") == spent

    time.sleep(fleet.settings.breaker_cooldown_seconds)
    assert fleet.relay.cycle("erp") == 1, "after the cool-down, one probe"
    assert len(erp.requests) == threshold + 1
    with fleet.engine.connect() as connection:
        assert read_control(connection, "erp").breaker == "open", "the failed probe re-opened it"

    down = False
    time.sleep(fleet.settings.breaker_cooldown_seconds)
    fleet.deliver()

    assert sorted(erp.applied) == [f"order-export:{o}" for o in ORDERS]
    with fleet.engine.connect() as connection:
        control = read_control(connection, "erp")
    assert (control.breaker, control.consecutive_failures) == ("closed", 0)
    assert sample("flowfleet_downstream_breaker_transitions_total", system="erp", state="opened") - opened_before == 2
    assert sample("flowfleet_downstream_breaker_transitions_total", system="erp", state="closed") - closed_before == 1
    logged = [(r.levelname, r.getMessage()) for r in caplog.records if "circuit breaker" in r.getMessage()]
    assert ("WARNING", "circuit breaker for erp opened: erp POST /orders answered 503") in logged
    assert ("INFO", "circuit breaker for erp closed: the system answered again") in logged


def test_a_paused_system_gets_no_request_even_after_a_relay_restart_and_a_resume_drains_it(
    fleet: FleetRun, erp: FakeDownstream, systems: dict[str, FakeDownstream]
) -> None:
    pause(fleet, "erp")

    fleet.run(*(envelope(order_v2(order_id, [("MUG-BLUE", 1)])) for order_id in ORDERS[:3]))
    restarted = build_relay(fleet.settings, fleet.engine, systems)
    restarted.drain(timeout=1, quiet=0.3)

    assert erp.requests == [], "neither relay sent anything to the paused ERP"
    assert sorted(fleet.orders()) == ORDERS[:3], "events keep being applied while the ERP is paused"
    assert fleet.systems["channels"].applied, "other systems are not paused"
    assert {r["status"] for r in rows(fleet.engine) if r["system"] == "erp"} == {"pending"}
    assert {r["attempts"] for r in rows(fleet.engine) if r["system"] == "erp"} == {0}, "a pause spends nothing"

    pause(fleet, "erp", paused=False)
    fleet.deliver()

    assert sorted(erp_keys(erp)) == [f"order-export:{o}" for o in ORDERS[:3]], "the backlog drains"


def test_a_pause_past_its_planned_end_holds_until_an_operator_resumes(fleet: FleetRun, erp: FakeDownstream) -> None:
    with fleet.engine.begin() as connection:
        pause_system(
            connection,
            "erp",
            actor="oncall",
            reason="window",
            until=datetime.now(UTC) - timedelta(seconds=1),
            now=datetime.now(UTC),
        )
    fleet.relay.gate.forget("erp")

    fleet.run(envelope(order_v2("ORD-1")))

    assert erp_keys(erp) == [], "the plan has passed, but nobody said the ERP is back"

    pause(fleet, "erp", paused=False)
    fleet.deliver()

    assert erp_keys(erp) == ["order-export:ORD-1"]


def test_no_request_is_sent_while_the_sending_thread_holds_a_database_connection(
    fleet: FleetRun, systems: dict[str, FakeDownstream]
) -> None:
    in_use = ConnectionsInUse(fleet.engine)
    seen: list[int] = []

    def checking(_path: str, _payload: Mapping[str, Any], _key: str, _attempt: int) -> int:
        seen.append(in_use.held_by_this_thread())
        return 200

    for system in systems.values():
        system.responder = checking

    fleet.run(envelope(order_v2("ORD-1", [("MUG-BLUE", 2)])), cancel("ORD-1"))

    assert len(seen) >= 3, "the export, the cancellation and the availability updates were sent"
    assert set(seen) == {0}, "every request went out with no connection (so no transaction, no row lock) held"


def test_a_429_delays_the_delivery_without_spending_an_attempt_or_starting_its_budget(
    fleet: FleetRun, erp: FakeDownstream
) -> None:
    erp.responder = lambda *_: 429
    fleet.publish(envelope(order_v2("ORD-1")))
    fleet.join()

    assert fleet.relay.cycle("erp") == 1
    row = by_key(fleet.engine)["order-export:ORD-1"]
    assert (row["status"], row["attempts"], row["throttles"], row["first_failed_at"]) == ("pending", 0, 1, None)
    due_in = row["next_attempt_at"].replace(tzinfo=UTC) - datetime.now(UTC)
    assert due_in > timedelta(seconds=0.5), "at least the Retry-After the ERP asked for (1 s)"
    assert fleet.relay.cycle("erp") == 0, "not due again yet"


def test_a_transient_failure_spends_one_attempt_starts_the_budget_and_backs_off(
    fleet: FleetRun, erp: FakeDownstream
) -> None:
    erp.responder = lambda *_: 503
    fleet.publish(envelope(order_v2("ORD-1")))
    fleet.join()

    assert fleet.relay.cycle("erp") == 1
    row = by_key(fleet.engine)["order-export:ORD-1"]
    assert (row["status"], row["attempts"], row["throttles"]) == ("pending", 1, 0)
    assert row["first_failed_at"] is not None
    assert "answered 503" in row["last_error"]
    assert row["lease_owner"] is None


def test_a_refused_delivery_holds_back_only_its_own_order_and_says_so(
    fleet: FleetRun, erp: FakeDownstream, caplog: pytest.LogCaptureFixture
) -> None:
    erp.responder = lambda _path, payload, _key, _attempt: 400 if payload["order_id"] == "ORD-1" else 200
    dead_before = sample("flowfleet_deliveries_total", system="erp", result="dead_lettered")

    fleet.run(envelope(order_v2("ORD-1")), envelope(order_v2("ORD-2")))
    fleet.run(cancel("ORD-1"), cancel("ORD-2"))

    assert erp_keys(erp) == ["order-export:ORD-2", "order-cancel:ORD-2"]
    keys = by_key(fleet.engine)
    assert keys["order-export:ORD-1"]["status"] == "dead_lettered"
    assert keys["order-cancel:ORD-1"]["status"] == "pending", "the cancel waits behind its refused export"
    [dead] = fleet.dead_letters()
    assert keys["order-export:ORD-1"]["dead_letter_id"] == dead["id"]
    assert (dead["stage"], dead["business_keys"]) == ("delivery", {"order_id": "ORD-1"})
    assert [k for k in dead["keys"] if k["name"] == "order_id"] == [{"name": "order_id", "value": "ORD-1"}]
    assert sample("flowfleet_deliveries_total", system="erp", result="dead_lettered") - dead_before == 1
    assert any("its ordering key erp:order_id=ORD-1 waits" in r.getMessage() for r in caplog.records)


def test_refused_deliveries_of_one_kind_share_a_fingerprint_whatever_their_order(
    fleet: FleetRun, erp: FakeDownstream
) -> None:
    erp.responder = lambda *_: 422

    fleet.run(envelope(order_v2("ORD-1")), envelope(order_v2("ORD-2")))

    fingerprints = {d["fingerprint"] for d in fleet.dead_letters() if d["stage"] == "delivery"}
    assert len(fingerprints) == 1


def test_a_relay_that_lost_its_lease_records_nothing(fleet: FleetRun, erp: FakeDownstream) -> None:
    slow: list[Callable[[], None]] = []

    def steal_the_lease(*_: Any) -> int:
        for thief in slow:
            thief()
        return 200

    erp.responder = steal_the_lease
    fleet.publish(envelope(order_v2("ORD-1")))
    fleet.join()
    other = build_relay(fleet.settings, fleet.engine, fleet.systems)

    def take_over() -> None:
        from tests.support.outbox import rows as read  # read at the moment of the request
        from workers.store.tables import deliveries

        [row] = [r for r in read(fleet.engine) if r["system"] == "erp"]
        with fleet.engine.begin() as connection:
            connection.execute(deliveries.update().where(deliveries.c.id == row["id"]).values(lease_owner=other.owner))

    slow.append(take_over)
    lost_before = sample("flowfleet_deliveries_total", system="erp", result="lease_lost")

    fleet.relay.cycle("erp")

    assert sample("flowfleet_deliveries_total", system="erp", result="lease_lost") - lost_before == 1
    assert by_key(fleet.engine)["order-export:ORD-1"]["status"] == "pending", "the new owner settles it"


def test_a_running_relay_is_woken_by_the_commit_not_by_its_sweep(
    fleet: FleetRun, erp: FakeDownstream, systems: dict[str, FakeDownstream]
) -> None:
    fleet.settings.relay_concurrency = 1
    background = build_relay(fleet.settings, fleet.engine, systems, fleet.fleet.wakeup)
    background.options = type(background.options)(**{**background.options.__dict__, "sweep_seconds": 30.0})
    background.start()
    try:
        time.sleep(0.2)  # every thread is waiting for a nudge now
        started = time.monotonic()
        fleet.publish(envelope(order_v2("ORD-1")))
        while not erp.applied and time.monotonic() - started < 5:
            time.sleep(0.01)
        took = time.monotonic() - started
    finally:
        background.stop()

    assert list(erp.applied) == ["order-export:ORD-1"]
    assert took < 2, f"sent {took:.2f} s after publishing, well before the 30 s sweep"


@pytest.mark.parametrize("taken_by", ["another relay", "another thread of this relay"])
def test_a_delivery_whose_lease_ran_down_in_the_batch_and_was_taken_over_is_not_sent_a_second_time(
    fleet: FleetRun, erp: FakeDownstream, taken_by: str
) -> None:
    from workers.store.tables import deliveries

    fleet.publish(envelope(order_v2("ORD-1")))
    fleet.publish(envelope(order_v2("ORD-2")))
    fleet.join()
    sender = build_relay(fleet.settings, fleet.engine, fleet.systems)
    sender.options = replace(sender.options, lease=timedelta(seconds=0.4))
    thief = (
        sender
        if taken_by == "another thread of this relay"
        else build_relay(fleet.settings, fleet.engine, fleet.systems)
    )

    def slow_and_meanwhile_taken_over(_path: str, _payload: Any, key: str, _attempt: int) -> int:
        time.sleep(0.2)  # the second delivery of the batch waits until less than a request's lease is left
        taken.append(next(k for k in ("order-export:ORD-1", "order-export:ORD-2") if k != key))
        with fleet.engine.begin() as connection:
            connection.execute(
                deliveries.update()
                .where(deliveries.c.idempotency_key == taken[0])
                .values(lease_owner=thief.owner, lease_expires_at=datetime.now(UTC) + timedelta(seconds=30))
            )
        return 200

    taken: list[str] = []
    erp.responder = slow_and_meanwhile_taken_over
    lost_before = sample("flowfleet_deliveries_total", system="erp", result="lease_lost")

    sender.cycle("erp")

    assert len(erp_keys(erp, ok_only=False)) == 1, "the taken-over delivery was not sent by this claim"
    assert erp_keys(erp, ok_only=False) != taken
    assert by_key(fleet.engine)[taken[0]]["lease_owner"] == thief.owner
    assert sample("flowfleet_deliveries_total", system="erp", result="lease_lost") - lost_before == 1
