"""Group commit in a real worker on PostgreSQL: a backlog commits in groups, each message still on its own path.

A backlog drained by eight worker threads commits far fewer transactions than it has messages; an
order the database refuses, in the middle of it, is dead-lettered alone; a worker killed in the middle
of the backlog loses and doubles nothing once another one finished it.
"""

from __future__ import annotations

import pytest

from tests.integration.conftest import Database, MakeEnvelope, Publish, StartWorker, WaitFor
from workers.demo.day import order_v2

pytestmark = pytest.mark.integration

#: Enough threads for groups to form; one attempt, so the refused order is dead-lettered at once.
GROUPING_ENV = {"FLOWFLEET_GROUP_COMMIT": "true", "FLOWFLEET_WORKER_THREADS": "8", "FLOWFLEET_MAX_ATTEMPTS": "1"}

#: Refuses one order; notes for every other the top-level transaction that stored it (txid_current() is
#: the same inside each savepoint of a transaction).
WATCH_ORDERS = """
CREATE TABLE order_transactions (order_id text PRIMARY KEY, txid bigint NOT NULL);
CREATE FUNCTION watch_orders() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.order_id = 'ORD-POISON' THEN
        RAISE EXCEPTION 'the database refuses this order' USING ERRCODE = 'check_violation';
    END IF;
    INSERT INTO order_transactions VALUES (NEW.order_id, txid_current());
    RETURN NEW;
END $$;
CREATE TRIGGER watch_orders BEFORE INSERT ON orders FOR EACH ROW EXECUTE FUNCTION watch_orders();
"""


def test_a_backlog_commits_in_groups_and_an_order_the_database_refuses_is_dead_lettered_alone(
    worker: StartWorker, publish: Publish, envelope: MakeEnvelope, database: Database, wait_for: WaitFor
) -> None:
    worker().stop()  # migrated: the trigger needs the orders table
    database.execute(WATCH_ORDERS)
    database.seed_stock("MUG-BLUE", "BER-1", 1000)
    good = [f"ORD-GROUP-{n:03d}" for n in range(120)]
    poison = envelope(order_v2_for("ORD-POISON"))
    for n, order_id in enumerate(good):
        publish(envelope(order_v2_for(order_id)))
        if n == len(good) // 2:
            publish(poison)

    running = worker("--no-relay", **GROUPING_ENV)
    wait_for(lambda: len(database.orders()) == len(good), timeout=120, what="every good order applied")
    wait_for(lambda: len(database.dead_letters()) == 1, timeout=60, what="the refused order archived")
    running.stop()
    transactions = database.scalar("SELECT count(DISTINCT txid) FROM order_transactions")

    assert sorted(o["order_id"] for o in database.orders()) == good
    assert len(database.processed_events()) == len(good), "one dedup claim per applied order, none for the refused"
    assert database.stock("MUG-BLUE", "BER-1")["reserved"] == len(good), "each order reserved once"
    (dead_letter,) = database.dead_letters()
    assert (dead_letter["message_id"], dead_letter["stage"]) == (poison["message_id"], "handler")
    assert database.scalar("SELECT count(*) FROM order_transactions") == len(good)
    # One transaction per message would be 120.
    assert transactions < len(good) // 2, f"{transactions} transactions stored {len(good)} orders"


def test_a_worker_killed_in_the_middle_of_a_backlog_loses_and_doubles_nothing(
    worker: StartWorker, publish: Publish, envelope: MakeEnvelope, database: Database, wait_for: WaitFor
) -> None:
    worker().stop()
    database.seed_stock("MUG-BLUE", "BER-1", 1000)
    orders = [f"ORD-KILL-{n:03d}" for n in range(400)]
    for order_id in orders:
        publish(envelope(order_v2_for(order_id)))

    first = worker("--no-relay", **GROUPING_ENV)
    wait_for(lambda: len(database.orders()) >= 60, timeout=120, what="a part of the backlog applied")
    first.kill()
    applied_before_the_kill = len(database.orders())
    assert applied_before_the_kill < len(orders), "the kill came after the backlog was done: it proves nothing"
    worker("--no-relay", **GROUPING_ENV)
    wait_for(lambda: len(database.orders()) == len(orders), timeout=120, what="the rest applied by the next worker")

    assert sorted(o["order_id"] for o in database.orders()) == orders
    assert len(database.processed_events()) == len(orders)
    assert database.stock("MUG-BLUE", "BER-1")["reserved"] == len(orders), "no order reserved twice or lost"
    lines = database.rows("SELECT order_id, count(*) AS n FROM order_lines GROUP BY order_id HAVING count(*) > 1")
    assert lines == [], "no order stored twice"
    assert database.dead_letters() == []


def order_v2_for(order_id: str) -> dict[str, object]:
    return order_v2(order_id, [("MUG-BLUE", 1)])
