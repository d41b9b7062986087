"""The archive drain on PostgreSQL: a backlog of dead letters is archived in batches, each still on its own.

A backlog in `orders.XQ` is stored in a few transactions (one per batch, one savepoint per dead letter)
and acked with one multiple ack each; a dead letter the database refuses in the middle of a batch is
archived raw, with the reason, without holding up or losing the others; while the database refuses
every record, nothing is acked and nothing is lost.
"""

from __future__ import annotations

import json

import pytest

from tests.integration.conftest import Database, Publish, Rabbit, StartWorker, WaitFor
from workers.deadletters.drain import BATCH

pytestmark = pytest.mark.integration

#: Notes for every archived dead letter the top-level transaction that stored it, and refuses the one
#: whose body names POISON unless it comes raw (the raw record's error_type is UnreadableDeadLetter).
WATCH_DEAD_LETTERS = """
CREATE TABLE dead_letter_transactions (dead_letter_id integer PRIMARY KEY, txid bigint NOT NULL);
CREATE FUNCTION watch_dead_letters() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF position('POISON' in convert_from(NEW.body, 'UTF8')) > 0 AND NEW.error_type <> 'UnreadableDeadLetter' THEN
        RAISE EXCEPTION 'the database refuses this dead letter' USING ERRCODE = 'check_violation';
    END IF;
    IF EXISTS (SELECT 1 FROM refuse_all) THEN
        RAISE EXCEPTION 'the database refuses every dead letter' USING ERRCODE = 'check_violation';
    END IF;
    INSERT INTO dead_letter_transactions VALUES (NEW.id, txid_current());
    RETURN NEW;
END $$;
CREATE TABLE refuse_all (on_ boolean);
CREATE TRIGGER watch_dead_letters AFTER INSERT ON dead_letters FOR EACH ROW EXECUTE FUNCTION watch_dead_letters();
"""


def _fill_dead_letter_queue(publish: Publish, bodies: list[bytes]) -> None:
    """Publish straight into orders.XQ, as the broker dead-letters a message: a backlog for the drain."""
    for body in bodies:
        publish(body, "orders.XQ", exchange="")


def _bodies(count: int, poison_at: int | None = None) -> list[bytes]:
    return [
        json.dumps({"not": "an envelope", "n": n, "tag": "POISON" if n == poison_at else "plain"}).encode()
        for n in range(count)
    ]


def test_a_backlog_is_archived_in_batches_and_a_refused_dead_letter_is_kept_raw_alone(
    worker: StartWorker, publish: Publish, database: Database, wait_for: WaitFor, rabbit: Rabbit
) -> None:
    worker().stop()  # migrated, and orders.XQ declared
    database.execute(WATCH_DEAD_LETTERS)
    count = 3 * BATCH
    _fill_dead_letter_queue(publish, _bodies(count, poison_at=BATCH + 7))

    running = worker("--no-relay")
    wait_for(lambda: len(database.dead_letters()) == count, timeout=60, what="every dead letter archived")
    running.stop()
    assert rabbit.queue_state("orders.XQ") == (0, 0), "every archived dead letter was acked"

    records = database.dead_letters()
    raw = [r for r in records if r["error_type"] == "UnreadableDeadLetter"]
    assert len(raw) == 1 and b"POISON" in bytes(raw[0]["body"]), "the refused one is kept raw, with its body"
    assert "could not be archived as read" in raw[0]["error_message"]
    assert sorted(json.loads(bytes(r["body"]))["n"] for r in records) == list(range(count)), "none lost or doubled"
    transactions = database.scalar("SELECT count(DISTINCT txid) FROM dead_letter_transactions")
    assert transactions <= count // 10, f"{transactions} transactions for {count} dead letters: not batched"


def test_while_the_database_refuses_every_dead_letter_none_is_acked_and_none_lost(
    worker: StartWorker, publish: Publish, database: Database, wait_for: WaitFor, rabbit: Rabbit
) -> None:
    worker().stop()
    database.execute(WATCH_DEAD_LETTERS)
    database.execute("INSERT INTO refuse_all VALUES (true)")
    # Refused as read, then refused raw too: the drain leaves the batch in its queue and retries.
    _fill_dead_letter_queue(publish, _bodies(BATCH + 5))

    running = worker("--no-relay")
    wait_for(
        lambda: "archive unavailable" in running.log(), timeout=30, what="the drain tried and left the batch queued"
    )
    assert database.dead_letters() == []
    database.execute("DELETE FROM refuse_all")
    wait_for(lambda: len(database.dead_letters()) == BATCH + 5, timeout=60, what="the backlog archived once allowed")
    running.stop()
    assert rabbit.queue_state("orders.XQ") == (0, 0)
    assert sorted(json.loads(bytes(r["body"]))["n"] for r in database.dead_letters()) == list(range(BATCH + 5))
