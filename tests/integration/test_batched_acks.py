"""Batched acks on the real broker: nothing is left unacked, a kill before the batch goes out doubles nothing."""

from __future__ import annotations

import subprocess
from urllib.parse import unquote, urlsplit

import psycopg
import pytest

from tests.integration.conftest import (
    ORDERS_QUEUE,
    Database,
    FakeErp,
    MakeEnvelope,
    Publish,
    Rabbit,
    StartWorker,
    WaitFor,
)
from tests.support.integration import Metrics
from workers.demo.day import order_v2

pytestmark = pytest.mark.integration


def _unacked(vhost_url: str) -> int | None:
    """The orders queue's unacked count, from the broker itself (rabbitmqctl: no statistics interval)."""
    vhost = unquote(urlsplit(vhost_url).path.lstrip("/"))
    listing = subprocess.run(
        ["rabbitmqctl", "-q", "list_queues", "-p", vhost, "--no-table-headers", "name", "messages_unacknowledged"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    counts = dict(line.split("\t", 1) for line in listing.splitlines() if "\t" in line)
    return int(counts[ORDERS_QUEUE]) if ORDERS_QUEUE in counts else None


def _lock_waiters(database: Database) -> int:
    rows = database.rows(
        "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    return int(rows[0]["n"])


def test_after_a_run_that_is_no_multiple_of_the_batch_no_message_is_left_unacked(
    worker: StartWorker,
    publish: Publish,
    envelope: MakeEnvelope,
    database: Database,
    rabbit: Rabbit,
    vhost: str,
    wait_for: WaitFor,
) -> None:
    running = worker()
    database.seed_stock("MUG-BLUE", "BER-1", 1000)
    count = 37  # the batch is 10 at prefetch 100: the last 7 go out on the interval
    for n in range(count):
        publish(envelope(order_v2(f"ORD-ACK-{n:03d}", [("MUG-BLUE", 1)])))

    wait_for(lambda: len(database.orders()) == count, timeout=120, what=f"{count} orders applied")
    wait_for(lambda: _unacked(vhost) == 0, timeout=60, what="the broker to see every message acked")
    running.kill()

    assert rabbit.queue_state(ORDERS_QUEUE)[0] == 0, "a killed worker's unacked messages would be ready again"


def test_a_worker_killed_after_effects_but_before_their_batched_ack_has_them_redelivered_and_applied_once(
    worker: StartWorker,
    publish: Publish,
    envelope: MakeEnvelope,
    database: Database,
    fake_erp: FakeErp,
    rabbit: Rabbit,
    metrics: Metrics,
    wait_for: WaitFor,
) -> None:
    first = worker()
    database.seed_stock("MUG-BLUE", "BER-1", 10)
    database.seed_stock("MUG-RED", "BER-1", 100)
    followers = [f"ORD-AFTER-{n}" for n in range(8)]
    with psycopg.connect(database.url) as holder:
        # The oldest delivery waits for a row lock: every later one is applied and committed, but the
        # contiguous prefix of finished deliveries cannot grow past it, so none of them is acked yet.
        holder.execute("SELECT 1 FROM stock_levels WHERE sku = 'MUG-BLUE' FOR UPDATE")
        publish(envelope(order_v2("ORD-BLOCKER", [("MUG-BLUE", 1)])))
        wait_for(lambda: _lock_waiters(database) > 0, what="the first order waiting for the stock row")
        for order_id in followers:
            publish(envelope(order_v2(order_id, [("MUG-RED", 1)])))
        wait_for(lambda: len(database.orders()) == len(followers), timeout=30, what="the followers committed")
        first.kill()
        database.rows(
            "SELECT pg_terminate_backend(pid) AS gone FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        holder.rollback()

    assert rabbit.queue_state(ORDERS_QUEUE)[0] == len(followers) + 1, "the followers were applied but not acked"
    worker(FLOWFLEET_METRICS_PORT=str(metrics.port))
    wait_for(lambda: len(database.orders()) == len(followers) + 1, timeout=30, what="the blocker applied")
    wait_for(
        lambda: metrics.value("flowfleet_messages_total", outcome="duplicate") == len(followers),
        what="each redelivered follower recognised as a duplicate",
    )
    assert metrics.value("flowfleet_messages_total", outcome="processed") == 1
    assert sorted(o["order_id"] for o in database.orders()) == sorted(["ORD-BLOCKER", *followers])
    assert database.stock("MUG-RED", "BER-1")["reserved"] == len(followers), "each follower reserved once"
    wait_for(lambda: len(fake_erp.exports()) == len(followers) + 1, what="each order exported")
    assert sorted(fake_erp.exports()) == sorted(f"order-export:{o}" for o in ["ORD-BLOCKER", *followers])


def test_failing_messages_between_successes_are_dead_lettered_alone_and_block_no_ack(
    worker: StartWorker,
    publish: Publish,
    envelope: MakeEnvelope,
    database: Database,
    rabbit: Rabbit,
    vhost: str,
    wait_for: WaitFor,
) -> None:
    running = worker()
    database.seed_stock("MUG-BLUE", "BER-1", 100)
    good = [f"ORD-GOOD-{n}" for n in range(6)]
    bad_ids = []
    for n, order_id in enumerate(good):
        publish(envelope(order_v2(order_id, [("MUG-BLUE", 1)])))
        if n % 3 == 0:
            bad = envelope({"order_id": f"ORD-BAD-{n}"})  # fails the contract: dead-lettered at once
            bad_ids.append(bad["message_id"])
            publish(bad)

    wait_for(lambda: len(database.orders()) == len(good), timeout=30, what="every good order applied")
    wait_for(lambda: len(database.dead_letters()) == len(bad_ids), timeout=30, what="the bad ones archived")
    wait_for(lambda: _unacked(vhost) == 0, timeout=60, what="the broker to see every message settled")
    running.kill()

    assert rabbit.queue_state(ORDERS_QUEUE)[0] == 0, "nothing is left to redeliver"
    rows = database.dead_letters()
    assert sorted(row["message_id"] for row in rows) == sorted(bad_ids)
    assert {row["stage"] for row in rows} == {"contract"}
