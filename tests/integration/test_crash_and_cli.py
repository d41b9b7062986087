"""Workers killed with kill -9 lose and double nothing; the operator CLI works against the real broker and archive."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.integration.conftest import (
    Database,
    FakeErp,
    MakeEnvelope,
    Publish,
    PublishRejects,
    Rabbit,
    RunFlowfleet,
    StartWorker,
    WaitFor,
)
from workers.demo.day import order_v2

pytestmark = pytest.mark.integration


def test_a_worker_killed_mid_request_has_its_delivery_taken_over_with_the_same_key_and_applied_once(
    worker: StartWorker,
    publish: Publish,
    envelope: MakeEnvelope,
    database: Database,
    fake_erp: FakeErp,
    wait_for: WaitFor,
) -> None:
    # A 2 s request timeout gives an 8 s lease: the second worker takes the delivery over after that.
    first = worker(FLOWFLEET_DOWNSTREAM_TIMEOUT_SECONDS="2")
    database.seed_stock("MUG-BLUE", "BER-1", 10)
    in_flight = threading.Event()
    fake_erp.on_request = lambda request: in_flight.set() if request.order_id == "ORD-7200" else None
    # The ERP applies the export, then holds its answer: the worker dies before it hears back.
    fake_erp.script("ORD-7200", fake_erp.reply(200, delay=30))

    publish(envelope(order_v2("ORD-7200", [("MUG-BLUE", 2)])))
    assert in_flight.wait(20), "the ERP never saw ORD-7200"
    assert len(database.orders("ORD-7200")) == 1, "the order was committed before its export went out"
    first.kill()
    worker(FLOWFLEET_DOWNSTREAM_TIMEOUT_SECONDS="2")

    wait_for(lambda: len(fake_erp.requests_for("ORD-7200")) == 2, timeout=30, what="the export sent again")
    wait_for(lambda: _delivery_statuses(database) == ["delivered"], what="the taken-over delivery settled")
    assert database.stock("MUG-BLUE", "BER-1")["reserved"] == 2, "stock reserved once, not twice"
    assert [row["dedup_key"] for row in database.processed_events()] == ["ORD-7200"]
    requests = fake_erp.requests_for("ORD-7200")
    assert [r.status for r in requests] == [200, 409], "the re-send met the ERP's idempotency check"
    assert {r.idempotency_key for r in requests} == {"order-export:ORD-7200"}
    assert fake_erp.exports() == ["order-export:ORD-7200"]
    assert database.dead_letters() == []


def _delivery_statuses(database: Database, system: str = "erp") -> list[str]:
    rows = database.rows("SELECT status FROM deliveries WHERE system = %s ORDER BY id", system)
    return [row["status"] for row in rows]


def test_workers_killed_while_the_erp_holds_their_requests_lose_no_delivery_and_double_no_effect(
    worker: StartWorker,
    publish: Publish,
    envelope: MakeEnvelope,
    database: Database,
    fake_erp: FakeErp,
    wait_for: WaitFor,
) -> None:
    env = {"FLOWFLEET_DOWNSTREAM_TIMEOUT_SECONDS": "2"}
    workers = [worker(**env) for _ in range(3)]
    database.seed_stock("MUG-BLUE", "BER-1", 100)
    orders = [f"ORD-76{n:02d}" for n in range(30)]
    fake_erp.default = fake_erp.reply(200, delay=0.05)
    for order_id in orders[:10]:
        fake_erp.script(order_id, fake_erp.reply(200, delay=30))  # held: the workers holding them die

    for order_id in orders:
        publish(envelope(order_v2(order_id, [("MUG-BLUE", 1)])))
    wait_for(
        lambda: len({r.order_id for r in fake_erp.requests if r.system == "erp"}) >= 12,
        timeout=30,
        what="requests held by the ERP",
    )
    for process in workers[:2]:
        process.kill()
    worker(**env)

    expected = sorted(f"order-export:{o}" for o in orders)
    wait_for(lambda: sorted(fake_erp.exports()) == expected, timeout=60, what="every export applied")
    wait_for(lambda: set(_delivery_statuses(database)) == {"delivered"}, timeout=60, what="every delivery settled")
    erp = [r for r in fake_erp.requests if r.system == "erp"]
    applied = [str(r.idempotency_key) for r in erp if r.status is not None and 200 <= r.status < 300]
    assert sorted(applied) == expected, "one effect per Idempotency-Key"
    assert {r.status for r in erp} <= {200, 409}
    # Sent again: only what the two killed workers had in flight (the 10 held, and at most a batch each of
    # quick ones whose answer was lost with them).
    assert len([r for r in erp if r.status == 409]) <= 10 + 2 * 20, "only requests in flight when a worker died"
    assert database.dead_letters() == []


def test_three_workers_never_send_the_same_delivery_twice(
    worker: StartWorker,
    publish: Publish,
    envelope: MakeEnvelope,
    database: Database,
    fake_erp: FakeErp,
    wait_for: WaitFor,
) -> None:
    for _ in range(3):
        worker()
    database.seed_stock("MUG-BLUE", "BER-1", 100)
    fake_erp.default = fake_erp.reply(200, delay=0.05)
    orders = [f"ORD-77{n:02d}" for n in range(40)]

    for order_id in orders:
        publish(envelope(order_v2(order_id, [("MUG-BLUE", 1)])))

    wait_for(lambda: len(fake_erp.exports()) == 40, timeout=60, what="40 exports")
    keys = [str(r.idempotency_key) for r in fake_erp.requests if r.system == "erp"]
    assert sorted(keys) == sorted(f"order-export:{o}" for o in orders), "each delivery sent once, by one worker"


def _waiting_for_a_lock(database: Database) -> int:
    rows = database.rows(
        "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    return int(rows[0]["n"])


def _kill_its_worker_until_archived(
    worker: StartWorker,
    publish: Publish,
    envelope: MakeEnvelope,
    database: Database,
    fake_erp: FakeErp,
    wait_for: WaitFor,
    bound: int,
) -> tuple[dict[str, Any], dict[str, Any], int]:
    """Publish an order whose every delivery ends in kill -9 (a row lock the test holds keeps its handler
    waiting; we kill), restarting the worker each time, until the broker's delivery limit archives it.

    Returns (the killer envelope, its archive row, how many workers it killed).
    """
    current = worker()
    database.seed_stock("MUG-BLUE", "BER-1", 10)
    killer = envelope(order_v2("ORD-KILLER", [("MUG-BLUE", 1)]))

    def archived() -> list[dict[str, Any]]:
        return [row for row in database.dead_letters() if row["error_type"] == "DeliveryLimitExceeded"]

    with psycopg.connect(database.url) as holder:
        holder.execute("SELECT 1 FROM stock_levels WHERE sku = 'MUG-BLUE' FOR UPDATE")
        publish(killer)
        kills = 0
        while not archived():
            wait_for(lambda: _waiting_for_a_lock(database) or archived(), what="the killer waiting, or archived")
            if _waiting_for_a_lock(database):
                current.kill()
                database.rows(
                    "SELECT pg_terminate_backend(pid) AS gone FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
                kills += 1
                assert kills <= bound, f"still redelivered after {kills} deaths"
                current = worker()
        holder.rollback()
    [row] = archived()
    return killer, row, kills


def test_a_message_that_kills_its_worker_every_time_is_archived_after_the_delivery_limit(
    worker: StartWorker,
    publish: Publish,
    envelope: MakeEnvelope,
    database: Database,
    fake_erp: FakeErp,
    wait_for: WaitFor,
    service_env: dict[str, str],
) -> None:
    delivery_limit = int(service_env["FLOWFLEET_DELIVERY_LIMIT"])

    killer, row, kills = _kill_its_worker_until_archived(
        worker, publish, envelope, database, fake_erp, wait_for, bound=delivery_limit + 2
    )

    assert row["stage"] == "handler"
    assert (row["message_id"], row["dedup_key"]) == (killer["message_id"], "ORD-KILLER")
    assert "delivery limit" in row["error_message"]
    assert 2 <= kills <= delivery_limit + 1
    assert fake_erp.requests_for("ORD-KILLER") == [], "nothing was committed, so nothing was sent"
    assert database.orders() == []

    publish(envelope(order_v2("ORD-7301", [("MUG-BLUE", 1)])))
    wait_for(lambda: database.orders("ORD-7301"), what="a good order published after the killer")
    wait_for(lambda: fake_erp.exports() == ["order-export:ORD-7301"], what="its export sent by the relay")


def test_a_delivery_limit_dead_letter_records_every_delivery_that_killed_a_worker(
    worker: StartWorker,
    publish: Publish,
    envelope: MakeEnvelope,
    database: Database,
    fake_erp: FakeErp,
    wait_for: WaitFor,
    service_env: dict[str, str],
) -> None:
    delivery_limit = int(service_env["FLOWFLEET_DELIVERY_LIMIT"])

    _killer, row, kills = _kill_its_worker_until_archived(
        worker, publish, envelope, database, fake_erp, wait_for, bound=delivery_limit + 2
    )

    assert row["attempts"] == kills


def _write_envelopes(path: Path, envelope: MakeEnvelope, count: int, prefix: str) -> None:
    lines = [json.dumps(envelope(order_v2(f"{prefix}-{n:03d}", [("MUG-BLUE", 1)]))) for n in range(count)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_publish_reports_every_envelope_of_a_jsonl_file_confirmed(
    flowfleet: RunFlowfleet, rabbit: Rabbit, envelope: MakeEnvelope, tmp_path: Path
) -> None:
    assert flowfleet("topology", "apply").returncode == 0
    path = tmp_path / "orders.jsonl"
    _write_envelopes(path, envelope, 50, "ORD-PUB")

    result = flowfleet("publish", str(path))

    assert result.returncode == 0, result.stderr
    assert "50 of 50 envelope(s) confirmed" in result.stdout
    assert rabbit.queue_state("orders") == (50, 0), "all 50 are waiting in the orders queue"


def test_publish_to_an_exchange_without_a_binding_fails_and_says_unroutable(
    flowfleet: RunFlowfleet, rabbit: Rabbit, envelope: MakeEnvelope, tmp_path: Path
) -> None:
    with rabbit.channel() as channel:
        channel.exchange_declare("commerce.nowhere", exchange_type="topic", durable=True)
    path = tmp_path / "orders.jsonl"
    _write_envelopes(path, envelope, 3, "ORD-LOST")

    result = flowfleet("publish", str(path), FLOWFLEET_EXCHANGE="commerce.nowhere")

    assert result.returncode != 0
    assert "0 of 3 envelope(s) confirmed" in result.stdout
    assert result.stderr.count("unroutable") == 3, result.stderr


def test_topology_apply_is_idempotent_and_check_reports_a_dead_letter_queue_with_a_ttl(
    flowfleet: RunFlowfleet, rabbit: Rabbit
) -> None:
    first = flowfleet("topology", "apply")
    second = flowfleet("topology", "apply")
    assert (first.returncode, second.returncode) == (0, 0), first.stderr + second.stderr
    assert "declared flow queue orders" in first.stdout
    assert first.stdout == second.stdout
    matches = flowfleet("topology", "check")
    assert matches.returncode == 0, matches.stdout + matches.stderr
    assert "topology matches" in matches.stdout

    with rabbit.channel() as channel:
        channel.queue_delete("orders.XQ")
        channel.queue_declare("orders.XQ", durable=True, arguments={"x-queue-type": "quorum", "x-message-ttl": 60_000})
    drift = flowfleet("topology", "check")
    as_json = flowfleet("topology", "check", "--json")

    assert drift.returncode == 1
    assert "orders.XQ" in drift.stdout
    assert "TTL" in drift.stdout
    assert as_json.returncode == 1
    report = json.loads(as_json.stdout)
    assert report["ok"] is False
    assert any("orders.XQ" in line and "TTL" in line for line in report["drift"])


def test_topology_check_reports_a_missing_binding_through_the_management_api(
    flowfleet: RunFlowfleet, rabbit: Rabbit, management_url: str
) -> None:
    assert flowfleet("topology", "apply").returncode == 0
    with rabbit.channel() as channel:
        channel.queue_unbind("orders", "commerce.events", "order.created")

    drift = flowfleet("topology", "check", FLOWFLEET_MANAGEMENT_URL=management_url)
    blind = flowfleet("topology", "check")

    assert drift.returncode == 1, drift.stdout + drift.stderr
    assert "not bound to commerce.events with routing key 'order.created'" in drift.stdout
    assert blind.returncode == 0
    assert "bindings not checked" in blind.stdout


def test_the_worker_refuses_to_start_without_an_erp_url_and_names_the_variable(flowfleet: RunFlowfleet) -> None:
    result = flowfleet("worker", FLOWFLEET_ERP_URL="")

    assert result.returncode != 0
    assert "FLOWFLEET_ERP_URL" in result.stderr
    assert "Traceback" not in result.stderr


def test_dlq_list_and_show_explain_each_rejection_and_mask_the_customer_email(
    worker: StartWorker, publish_rejects: PublishRejects, database: Database, flowfleet: RunFlowfleet, wait_for: WaitFor
) -> None:
    worker()
    sent = publish_rejects()
    wait_for(lambda: len(database.dead_letters()) == 4, what="4 dead letters")

    listing = flowfleet("dlq", "list", "--json")

    assert listing.returncode == 0, listing.stderr
    page = json.loads(listing.stdout)
    assert page["total"] == 4
    assert sorted(item["stage"] for item in page["items"]) == ["contract", "contract", "decode", "decode"]
    assert all(item["error_message"] and item["attempts"] == 1 for item in page["items"])
    assert sent.customer_email not in listing.stdout
    [invalid] = [item for item in page["items"] if item["message_id"] == sent.invalid_data_id]
    assert "data.lines.0.quantity" in invalid["error_message"]

    shown = flowfleet("dlq", "show", str(invalid["id"]), "--json")

    assert shown.returncode == 0, shown.stderr
    record = json.loads(shown.stdout)
    assert (record["stage"], record["message_id"]) == ("contract", sent.invalid_data_id)
    assert "data.lines.0.quantity" in record["field_paths"]
    assert record["envelope"]["data"]["order_id"] == sent.invalid_order_id
    assert record["envelope"]["data"]["customer"]["email"] == "***"
    assert sent.customer_email not in shown.stdout
    assert [event["action"] for event in record["history"]] == ["archived"]

    [broken] = [item for item in page["items"] if "not JSON" in item["error_message"]]
    broken_shown = flowfleet("dlq", "show", str(broken["id"]), "--json")
    assert broken_shown.returncode == 0, broken_shown.stderr
    assert "m-broken" in json.loads(broken_shown.stdout)["body"]
    assert sent.customer_email not in broken_shown.stdout

    unmasked = flowfleet("dlq", "show", str(invalid["id"]), "--json", "--unmask")
    assert json.loads(unmasked.stdout)["envelope"]["data"]["customer"]["email"] == sent.customer_email
