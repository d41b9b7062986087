"""The outbox and its relay on real RabbitMQ, PostgreSQL and HTTP: an ERP outage, a pause, a flapping ERP."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.integration.conftest import (
    ApplyEvent,
    Database,
    ErpRequest,
    FakeErp,
    RunFlowfleet,
    StartWorker,
    WaitFor,
)
from workers.demo.day import order_v2
from workers.store.db import make_engine
from workers.store.outbox.recorder import Cause, OutboxRecorder

pytestmark = pytest.mark.integration

#: Enough 503s to outlast any test: the ERP is down until a test scripts it back.
DOWN = [503] * 10_000


def cancel(order_id: str) -> dict[str, Any]:
    return {"order_id": order_id, "reason": "customer_request"}


def erp_requests(fake_erp: FakeErp, *, ok_only: bool = False) -> list[ErpRequest]:
    return [r for r in fake_erp.requests if r.system == "erp" and (not ok_only or r.status in (200, 201, 202, 409))]


def set_paused(database: Database, system: str, paused: bool) -> None:
    database.execute(
        "UPDATE downstream_controls SET paused = %s, paused_by = 'oncall', pause_reason = 'ERP upgrade', "
        "paused_since = now() WHERE system = %s",
        paused,
        system,
    )


def test_an_erp_outage_reserves_every_order_and_once_it_recovers_exports_each_once_cancel_after_export(
    worker: StartWorker, apply_event: ApplyEvent, database: Database, fake_erp: FakeErp, wait_for: WaitFor
) -> None:
    worker()
    worker()
    database.seed_stock("MUG-BLUE", "BER-1", 20)
    orders = [f"ORD-81{n:02d}" for n in range(8)]
    for order_id in orders:
        fake_erp.script(order_id, *DOWN)

    for order_id in orders:
        apply_event("order.created", order_v2(order_id, [("MUG-BLUE", 1)]), version=2, deliveries=False)
    for order_id in orders[:3]:
        apply_event("order.cancelled", cancel(order_id), version=1, deliveries=False)
    time.sleep(3)  # the outage goes on while the relay retries, and its breaker opens

    assert len(database.orders()) == 8, "every order is applied during the outage"
    assert database.stock("MUG-BLUE", "BER-1")["reserved"] == 5, "eight reserved, three released by cancels"
    assert [r for r in fake_erp.requests if r.system == "channels"], "channels heard about availability meanwhile"
    assert database.dead_letters() == [], "an outage writes no dead letter"
    assert erp_requests(fake_erp, ok_only=True) == []

    for order_id in orders:
        fake_erp.script(order_id)  # the ERP is back
    expected = sorted([f"order-export:{o}" for o in orders] + [f"order-cancel:{o}" for o in orders[:3]])
    wait_for(lambda: sorted(fake_erp.exports()) == expected, timeout=60, what="every export and cancel applied")

    accepted = [str(r.idempotency_key) for r in erp_requests(fake_erp) if r.status in (200, 201, 202)]
    assert sorted(accepted) == expected, "each applied exactly once"
    for order_id in orders[:3]:
        assert accepted.index(f"order-export:{order_id}") < accepted.index(f"order-cancel:{order_id}")
    assert database.dead_letters() == []


def test_a_pause_is_honoured_by_every_worker_within_seconds_survives_a_restart_and_a_resume_drains(
    worker: StartWorker, apply_event: ApplyEvent, database: Database, fake_erp: FakeErp, wait_for: WaitFor
) -> None:
    first, _second = worker(), worker()
    database.seed_stock("MUG-BLUE", "BER-1", 20)
    set_paused(database, "erp", True)
    time.sleep(2.5)  # every relay re-reads its system's row at least every second

    orders = [f"ORD-82{n:02d}" for n in range(4)]
    for order_id in orders:
        apply_event("order.created", order_v2(order_id, [("MUG-BLUE", 1)]), version=2, deliveries=False)
    first.stop()
    worker()
    time.sleep(3)

    assert erp_requests(fake_erp) == [], "no worker sent anything to the paused ERP, the restarted one neither"
    assert len(database.orders()) == 4
    assert [r for r in fake_erp.requests if r.system == "channels"], "only the ERP is paused"
    pending = database.rows("SELECT attempts FROM deliveries WHERE system = 'erp' AND status = 'pending'")
    assert [row["attempts"] for row in pending] == [0] * 4, "a pause spends no attempt"

    set_paused(database, "erp", False)
    wait_for(lambda: len(fake_erp.exports()) == 4, timeout=20, what="the backlog drained after the resume")
    assert sorted(fake_erp.exports()) == [f"order-export:{o}" for o in orders]


def test_the_breaker_opens_on_a_flapping_erp_stops_spending_attempts_and_closes_after_recovery(
    worker: StartWorker, apply_event: ApplyEvent, database: Database, fake_erp: FakeErp, wait_for: WaitFor
) -> None:
    worker(FLOWFLEET_BREAKER_THRESHOLD="3", FLOWFLEET_BREAKER_COOLDOWN_SECONDS="2")
    database.seed_stock("MUG-BLUE", "BER-1", 20)
    orders = [f"ORD-83{n:02d}" for n in range(10)]
    for order_id in orders:
        fake_erp.script(order_id, *DOWN)

    for order_id in orders:
        apply_event("order.created", order_v2(order_id, [("MUG-BLUE", 1)]), timeout=30, version=2, deliveries=False)
    wait_for(
        lambda: (
            database.scalar("SELECT breaker FROM downstream_controls WHERE system = 'erp'") in ("open", "half_open")
        ),
        what="the breaker open",
    )
    time.sleep(4.5)  # two cool-downs: two probes at most
    tried = len(erp_requests(fake_erp))

    assert tried <= 3 + 4 + 3, f"{tried} requests: the threshold, in-flight ones, and a probe per cool-down"
    spent = database.scalar("SELECT sum(attempts) FROM deliveries WHERE system = 'erp'")
    assert spent == tried, "every attempt spent was a request made; none were spent while the breaker was open"
    assert len(database.orders()) == 10

    for order_id in orders:
        fake_erp.script(order_id)
    wait_for(lambda: len(fake_erp.exports()) == 10, timeout=30, what="every export after recovery")
    wait_for(
        lambda: database.scalar("SELECT breaker FROM downstream_controls WHERE system = 'erp'") == "closed",
        what="the breaker closed",
    )
    assert database.dead_letters() == []


def test_a_refused_export_is_a_delivery_dead_letter_with_the_orders_keys_and_dlq_replay_after_the_fix_sends_it(
    worker: StartWorker,
    apply_event: ApplyEvent,
    database: Database,
    fake_erp: FakeErp,
    wait_for: WaitFor,
    flowfleet: RunFlowfleet,
) -> None:
    worker()
    database.seed_stock("MUG-BLUE", "BER-1", 10)
    fake_erp.script("ORD-8400", 422)

    sent = apply_event("order.created", order_v2("ORD-8400", [("MUG-BLUE", 1)]), version=2)
    [row] = wait_for(database.dead_letters, what="the refused export in the archive")
    assert (row["stage"], row["message_id"], row["dedup_key"]) == ("delivery", sent["message_id"], "ORD-8400")
    assert row["business_keys"] == {"order_id": "ORD-8400"}
    listed = flowfleet("dlq", "list", "--key", "order_id=ORD-8400", "--json")
    assert [item["stage"] for item in json.loads(listed.stdout)["items"]] == ["delivery"]

    replayed = flowfleet("dlq", "replay", "--stage", "delivery", "--reason", "ERP accepts the order now (INC-12)")
    assert replayed.returncode == 0, replayed.stderr

    wait_for(lambda: fake_erp.exports() == ["order-export:ORD-8400"], what="the export sent again after the fix")
    keys = [r.idempotency_key for r in fake_erp.requests_for("ORD-8400")]
    assert keys == ["order-export:ORD-8400", "order-export:ORD-8400"], "the same Idempotency-Key both times"
    wait_for(
        lambda: database.scalar("SELECT status FROM dead_letters WHERE id = %s", row["id"]) == "resolved",
        what="the dead letter resolved once delivered",
    )


def test_a_worker_without_its_relay_records_deliveries_that_a_relay_only_process_sends(
    worker: StartWorker, apply_event: ApplyEvent, database: Database, fake_erp: FakeErp, wait_for: WaitFor
) -> None:
    worker("--no-relay")
    database.seed_stock("MUG-BLUE", "BER-1", 10)

    apply_event("order.created", order_v2("ORD-8500", [("MUG-BLUE", 1)]), version=2, deliveries=False)
    time.sleep(1.5)
    assert fake_erp.requests == [], "a worker started with --no-relay sends nothing"
    assert [row["status"] for row in database.rows("SELECT status FROM deliveries WHERE system = 'erp'")] == ["pending"]

    worker("--relay-only")

    wait_for(lambda: fake_erp.exports() == ["order-export:ORD-8500"], what="the relay-only process sent it")


def test_three_relays_never_send_one_delivery_at_once_and_a_kill_9_mid_request_loses_nothing(
    worker: StartWorker, database: Database, fake_erp: FakeErp, wait_for: WaitFor
) -> None:
    # A 2 s request timeout makes the lease 8 s: a dead relay's deliveries are taken over within seconds.
    relays = [worker("--relay-only", FLOWFLEET_DOWNSTREAM_TIMEOUT_SECONDS="2") for _ in range(3)]
    orders, steps = [f"ORD-93{n:02d}" for n in range(12)], 25
    for order_id in orders:
        # The first two requests of every order are held 1 s (applied first, like a slow ERP): a kill lands mid-request.
        fake_erp.script(order_id, FakeErp.reply(200, delay=1.0), FakeErp.reply(200, delay=1.0))
    record_deliveries(database, [(order_id, step) for step in range(steps) for order_id in orders])

    def a_relay_holds_a_request() -> int | None:
        held = database.rows(
            "SELECT DISTINCT lease_owner FROM deliveries WHERE status = 'pending' AND lease_owner IS NOT NULL"
        )
        pids = {int(str(row["lease_owner"]).split(":")[1]) for row in held}
        return next((relay.pid for relay in relays if relay.pid in pids), None)

    victim = wait_for(a_relay_holds_a_request, timeout=30, what="a relay holding a leased delivery")
    killed = next(relay for relay in relays if relay.pid == victim)
    killed.kill()

    expected = {f"step:{order_id}:{step}" for order_id in orders for step in range(steps)}
    wait_for(lambda: set(fake_erp.exports()) == expected, timeout=120, what="every delivery applied by the ERP")
    wait_for(
        lambda: database.scalar("SELECT count(*) FROM deliveries WHERE status <> 'delivered'") == 0,
        timeout=60,
        what="every delivery recorded as delivered",
    )

    assert killed.process.returncode == -9
    assert database.scalar("SELECT count(*) FROM deliveries") == len(expected)
    doubled = {key: n for key, n in fake_erp.most_in_flight.items() if n > 1}
    start = fake_erp.requests[0].at
    seen = [(r.idempotency_key, round(r.at - start, 2), r.status) for r in erp_requests(fake_erp)]
    seen = [request for request in seen if request[0] in doubled]
    assert doubled == {}, f"two requests with one Idempotency-Key were in flight at once: {seen[:60]} killed {victim}"
    accepted = [str(r.idempotency_key) for r in erp_requests(fake_erp) if r.status == 200]
    assert sorted(accepted) == sorted(expected), "each key had its effect once (a repeat was answered 409)"
    for order_id in orders:
        applied = [key for key in fake_erp.applied if key.startswith(f"step:{order_id}:")]
        assert applied == [f"step:{order_id}:{step}" for step in range(steps)], f"{order_id} kept its order"
    assert database.dead_letters() == []


def record_deliveries(database: Database, steps: list[tuple[str, int]]) -> None:
    """Record one ERP delivery per (order, step) through the outbox recorder, in one transaction, in that order."""
    engine = make_engine(database.url)
    try:
        with engine.begin() as connection:
            for order_id, step in steps:
                cause = Cause("orders", "order.noted", 1, f"msg-{order_id}-{step}", f"{order_id}:{step}")
                OutboxRecorder(connection, "erp", cause).post(
                    "/orders/notes", {"order_id": order_id, "step": step}, idempotency_key=f"step:{order_id}:{step}"
                )
    finally:
        engine.dispose()
