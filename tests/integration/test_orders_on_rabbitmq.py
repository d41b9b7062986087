"""The orders flow end to end on real RabbitMQ, PostgreSQL and HTTP: envelopes in, rows and ERP exports out."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pika
import pytest

from tests.integration.conftest import (
    Database,
    FakeErp,
    MakeEnvelope,
    Publish,
    PublishRejects,
    Rabbit,
    StartWorker,
    WaitFor,
)
from workers.demo.day import order_v1, order_v2

pytestmark = pytest.mark.integration


def test_a_plain_envelope_is_stored_reserved_per_line_and_exported_once(
    worker: StartWorker,
    publish: Publish,
    envelope: MakeEnvelope,
    database: Database,
    fake_erp: FakeErp,
    wait_for: WaitFor,
) -> None:
    worker()
    database.seed_stock("TEE-RED-M", "BER-1", 5)
    database.seed_stock("LAMP-ARC", "HAM-2", 1)

    publish(envelope(order_v2("ORD-7001", [("TEE-RED-M", 2), ("LAMP-ARC", 3)])))

    wait_for(lambda: database.orders("ORD-7001"), what="order ORD-7001 in PostgreSQL")
    [order] = database.orders("ORD-7001")
    assert order["status"] == "partially_backordered"
    assert order["channel"] == "storefront"
    lines = {line["sku"]: line for line in database.order_lines("ORD-7001")}
    assert (lines["TEE-RED-M"]["status"], lines["TEE-RED-M"]["location"]) == ("reserved", "BER-1")
    assert (lines["LAMP-ARC"]["status"], lines["LAMP-ARC"]["location"]) == ("backordered", None)
    assert database.stock("TEE-RED-M", "BER-1")["reserved"] == 2
    assert database.stock("LAMP-ARC", "HAM-2")["reserved"] == 0
    [request] = wait_for(lambda: fake_erp.requests_for("ORD-7001"), what="ORD-7001 exported after its commit")
    assert (request.path, request.idempotency_key) == ("/orders", "order-export:ORD-7001")
    [availability] = wait_for(
        lambda: [r for r in fake_erp.requests if r.system == "channels"], what="availability sent to the channels"
    )
    assert availability.path == "/channels/availability"
    assert availability.body == {"sku": "TEE-RED-M", "available": 3}
    assert request.body["order_id"] == "ORD-7001"
    assert request.body["status"] == "partially_backordered"
    assert [line["status"] for line in request.body["lines"]] == ["reserved", "backordered"]


def test_copies_of_one_order_have_one_effect_whatever_their_message_ids(
    worker: StartWorker,
    publish: Publish,
    envelope: MakeEnvelope,
    database: Database,
    fake_erp: FakeErp,
    rabbit: Rabbit,
    wait_for: WaitFor,
) -> None:
    running = worker()
    database.seed_stock("MUG-BLUE", "BER-1", 10)
    order = order_v2("ORD-7002", [("MUG-BLUE", 2)])
    first, second = envelope(order), envelope(order)  # same order id, new message_id

    publish(first)
    publish(second)
    publish(first)  # the very same message again
    publish(envelope(order_v2("ORD-7003", [("MUG-BLUE", 1)])))  # comes after the copies

    wait_for(lambda: database.orders("ORD-7003"), what="the order published after the copies")
    wait_for(lambda: len(fake_erp.exports()) == 2, what="both exports sent by the relay")
    assert running.stop() == 0  # finishes what is in flight
    assert rabbit.queue_state("orders")[0] == 0, "every copy was consumed"
    assert len(database.orders("ORD-7002")) == 1
    assert database.stock("MUG-BLUE", "BER-1")["reserved"] == 3
    assert [r.idempotency_key for r in fake_erp.requests_for("ORD-7002")] == ["order-export:ORD-7002"]
    assert sorted(fake_erp.exports()) == ["order-export:ORD-7002", "order-export:ORD-7003"]
    [claim] = [row for row in database.processed_events() if row["dedup_key"] == "ORD-7002"]
    # Two worker threads take the copies at once: whichever commits its claim first is the one applied.
    assert claim["message_id"] in {first["message_id"], second["message_id"]}
    assert database.dead_letters() == []


def test_a_v1_order_is_upcast_and_stored_as_a_storefront_order(
    worker: StartWorker,
    publish: Publish,
    envelope: MakeEnvelope,
    database: Database,
    fake_erp: FakeErp,
    wait_for: WaitFor,
) -> None:
    worker()
    database.seed_stock("MUG-BLUE", "BER-1", 10)

    publish(envelope(order_v1("ORD-0999", "MUG-BLUE", 2), version=1))

    [order] = wait_for(lambda: database.orders("ORD-0999"), what="the v1 order")
    assert (order["channel"], order["currency"], order["total_minor"]) == ("storefront", "GBP", 2500)
    [line] = database.order_lines("ORD-0999")
    assert (line["line_id"], line["sku"], line["quantity"], line["status"]) == ("1", "MUG-BLUE", 2, "reserved")
    [request] = wait_for(lambda: fake_erp.requests_for("ORD-0999"), what="the v1 order exported")
    assert request.body["channel"] == "storefront"


def test_bad_input_is_archived_on_the_first_attempt_with_its_stage_and_reason(
    worker: StartWorker, publish_rejects: PublishRejects, database: Database, fake_erp: FakeErp, wait_for: WaitFor
) -> None:
    worker()

    sent = publish_rejects()

    rows = wait_for(lambda: len(database.dead_letters()) == 4 and database.dead_letters(), what="4 dead letters")
    assert [row["attempts"] for row in rows] == [1, 1, 1, 1]
    decode = [row for row in rows if row["stage"] == "decode"]
    assert len(decode) == 2
    assert any("not JSON" in row["error_message"] for row in decode)
    assert any("not an envelope" in row["error_message"] for row in decode)
    contract = {row["message_id"]: row for row in rows if row["stage"] == "contract"}
    assert "no version 7" in contract[sent.unknown_version_id]["error_message"]
    invalid = contract[sent.invalid_data_id]
    assert "data.lines.0.quantity" in invalid["error_message"]
    assert "data.lines.0.quantity" in invalid["field_paths"]
    assert all(row["status"] == "open" and row["flow"] == "orders" for row in rows)
    assert fake_erp.requests == []
    assert database.orders() == []


def test_an_erp_that_recovers_gets_the_same_idempotency_key_and_the_order_is_stored_once(
    worker: StartWorker,
    publish: Publish,
    envelope: MakeEnvelope,
    database: Database,
    fake_erp: FakeErp,
    wait_for: WaitFor,
) -> None:
    worker()
    database.seed_stock("MUG-BLUE", "BER-1", 10)
    fake_erp.script("ORD-7005", 503, 503, 200)

    publish(envelope(order_v2("ORD-7005", [("MUG-BLUE", 1)])))

    wait_for(lambda: fake_erp.exports() == ["order-export:ORD-7005"], what="ORD-7005 exported after two 503s")
    requests = fake_erp.requests_for("ORD-7005")
    assert [r.status for r in requests] == [503, 503, 200]
    assert {r.idempotency_key for r in requests} == {"order-export:ORD-7005"}
    assert len(database.orders("ORD-7005")) == 1
    assert database.stock("MUG-BLUE", "BER-1")["reserved"] == 1, "the ERP's 503s never touched the reservation"
    assert database.dead_letters() == []


def test_a_retry_after_from_the_erp_is_honoured(
    worker: StartWorker,
    publish: Publish,
    envelope: MakeEnvelope,
    database: Database,
    fake_erp: FakeErp,
    wait_for: WaitFor,
) -> None:
    worker()
    database.seed_stock("MUG-BLUE", "BER-1", 10)
    fake_erp.script("ORD-7006", fake_erp.reply(503, retry_after="2"), 200)

    publish(envelope(order_v2("ORD-7006", [("MUG-BLUE", 1)])))

    wait_for(lambda: len(fake_erp.requests_for("ORD-7006")) == 2, what="ORD-7006 sent again after a Retry-After")
    first, second = fake_erp.requests_for("ORD-7006")
    # The relay's backoff alone would be 50-100 ms here; Retry-After asks for 2 s.
    assert second.at - first.at >= 1.9


def test_an_erp_refusal_keeps_the_order_and_dead_letters_its_export_at_stage_delivery_without_retrying(
    worker: StartWorker,
    publish: Publish,
    envelope: MakeEnvelope,
    database: Database,
    fake_erp: FakeErp,
    wait_for: WaitFor,
) -> None:
    worker()
    database.seed_stock("MUG-BLUE", "BER-1", 10)
    fake_erp.script("ORD-7007", 400)
    order = envelope(order_v2("ORD-7007", [("MUG-BLUE", 1)]))

    publish(order)

    [row] = wait_for(database.dead_letters, what="the refused export in the archive")
    assert (row["stage"], row["attempts"], row["error_type"]) == ("delivery", 1, "PermanentError")
    assert "400" in row["error_message"]
    assert (row["message_id"], row["dedup_key"]) == (order["message_id"], "ORD-7007")
    assert len(fake_erp.requests_for("ORD-7007")) == 1
    assert [o["order_id"] for o in database.orders()] == ["ORD-7007"]
    assert database.stock("MUG-BLUE", "BER-1")["reserved"] == 1


def test_an_erp_that_stays_down_keeps_the_order_and_dead_letters_its_export_once_the_budget_is_spent(
    worker: StartWorker,
    publish: Publish,
    envelope: MakeEnvelope,
    database: Database,
    fake_erp: FakeErp,
    wait_for: WaitFor,
) -> None:
    worker(FLOWFLEET_ERP_DELIVERY_BUDGET_SECONDS="3", FLOWFLEET_BREAKER_THRESHOLD="1000")
    database.seed_stock("MUG-BLUE", "BER-1", 10)
    fake_erp.script("ORD-7008", *[503] * 1000)

    publish(envelope(order_v2("ORD-7008", [("MUG-BLUE", 1)])))

    wait_for(lambda: database.orders("ORD-7008"), what="ORD-7008 applied while the ERP is down")
    assert database.stock("MUG-BLUE", "BER-1")["reserved"] == 1
    [row] = wait_for(database.dead_letters, timeout=30, what="the export in the archive after its delivery budget")
    assert (row["stage"], row["error_type"]) == ("delivery", "DeliveryBudgetSpent")
    assert "delivery budget of 3 s spent" in row["error_message"]
    assert "503" in row["error_message"]
    assert row["first_failed_at"] < row["last_failed_at"]
    assert row["attempts"] == len(fake_erp.requests_for("ORD-7008")) >= 3
    assert fake_erp.exports() == []


def test_the_queue_keeps_flowing_behind_a_poison_message(
    worker: StartWorker,
    publish: Publish,
    envelope: MakeEnvelope,
    database: Database,
    fake_erp: FakeErp,
    wait_for: WaitFor,
) -> None:
    worker()
    database.seed_stock("MUG-BLUE", "BER-1", 100)
    fake_erp.script("ORD-7100", 400)

    publish(b"\x00\xff not even text")
    publish(envelope(order_v2("ORD-7100", [("MUG-BLUE", 1)])))  # the ERP refuses this one's export
    good = [f"ORD-71{n:02d}" for n in range(1, 11)]
    for order_id in good:
        publish(envelope(order_v2(order_id, [("MUG-BLUE", 1)])))

    wait_for(lambda: len(database.orders()) == 11, timeout=30, what="all 11 orders")
    assert [o["order_id"] for o in database.orders()] == ["ORD-7100", *good]
    wait_for(lambda: len(fake_erp.exports()) == 10, what="10 exports")
    assert sorted(fake_erp.exports()) == [f"order-export:{order_id}" for order_id in good]
    rows = wait_for(lambda: len(database.dead_letters()) == 2 and database.dead_letters(), what="2 dead letters")
    assert sorted(row["stage"] for row in rows) == ["decode", "delivery"]


def test_two_workers_never_reserve_more_stock_than_is_on_hand(
    worker: StartWorker, publish: Publish, envelope: MakeEnvelope, database: Database, wait_for: WaitFor
) -> None:
    worker()
    worker()
    database.seed_stock("MUG-BLUE", "BER-1", 3)
    database.seed_stock("MUG-BLUE", "HAM-2", 2)

    for n in range(12):
        publish(envelope(order_v2(f"ORD-74{n:02d}", [("MUG-BLUE", 1)])))

    wait_for(lambda: len(database.orders()) == 12, timeout=30, what="12 orders from two workers")
    statuses = [order["status"] for order in database.orders()]
    assert (statuses.count("reserved"), statuses.count("backordered")) == (5, 7)
    assert database.stock("MUG-BLUE", "BER-1")["reserved"] == 3
    assert database.stock("MUG-BLUE", "HAM-2")["reserved"] == 2


def test_an_event_older_than_the_age_limit_is_archived_as_expired_and_not_applied(
    worker: StartWorker,
    publish: Publish,
    envelope: MakeEnvelope,
    database: Database,
    fake_erp: FakeErp,
    wait_for: WaitFor,
) -> None:
    worker()
    stale = envelope(order_v2("ORD-7500", [("MUG-BLUE", 1)]), occurred_at=datetime.now(UTC) - timedelta(days=9))

    publish(stale)

    [row] = wait_for(database.dead_letters, what="the stale order in the archive")
    assert (row["stage"], row["attempts"], row["message_id"]) == ("expired", 1, stale["message_id"])
    assert fake_erp.requests == []
    assert database.orders() == []


def test_a_publisher_forging_the_internal_retry_format_cannot_make_a_message_vanish(
    worker: StartWorker, vhost: str, publish: Publish, database: Database, wait_for: WaitFor
) -> None:
    worker(FLOWFLEET_WORKER_THREADS="1")  # one thread: messages finish in the order they were published
    forged = {
        "queue_name": "orders",
        "actor_name": "orders",
        "args": [],
        "kwargs": {"body": "forged-retry-body"},
        "options": {"attempt": "many"},
        "message_id": "forged-1",
        "message_timestamp": 0,
    }
    connection = pika.BlockingConnection(pika.URLParameters(vhost))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.basic_publish(
            "commerce.events",
            "order.created",
            json.dumps(forged).encode(),
            pika.BasicProperties(delivery_mode=2, headers={"x-flowfleet-format": "dramatiq"}),
            mandatory=True,
        )
    finally:
        connection.close()
    publish(b"sentinel: not json")  # handled after the forged message

    wait_for(
        lambda: any(b"sentinel" in bytes(row["body"]) for row in database.dead_letters()),
        what="the sentinel in the archive",
    )
    assert any(b"forged-retry-body" in bytes(row["body"]) for row in database.dead_letters()), (
        "the forged message was acked without being applied or archived"
    )
