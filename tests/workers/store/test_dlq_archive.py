"""The archive side of dead-letter operations on SQLite: the 0003 migration, key search, marks that cannot jam."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, inspect, select, text

from handlers.errors import PermanentError
from tests.support.envelopes import envelope, order_v2
from tests.support.fleet_run import FleetRun
from tests.support.migrations import downgrade, upgrade
from workers.failures import classify
from workers.messaging.dead_letters import archive_record, dead_letter_headers, dead_letter_id
from workers.messaging.replay_headers import ReplayMark
from workers.store.archive import actions, outcomes, replays
from workers.store.archive.records import DeadLetterFilter, archive, list_dead_letters
from workers.store.db import make_engine
from workers.store.tables import dead_letter_keys, dead_letter_replays


def test_the_migration_fills_the_key_table_from_dead_letters_archived_before_it_and_keeps_their_trail(
    tmp_path: Any,
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    upgrade(engine, "0002")
    body = envelope({"payment_id": "PAY-1", "order_id": "ORD-1", "amount_minor": -1}, contract="payment.authorized")
    now = datetime.now(UTC).isoformat(sep=" ")
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO dead_letters (dead_letter_key, flow, queue, stage, business_keys, error_type, "
                "error_message, field_paths, attempts, first_failed_at, last_failed_at, archived_at, fingerprint, "
                "status, body, headers) VALUES ('k1', 'payments', 'payments.XQ', 'contract', :keys, 'X', 'm', '[]', "
                "1, :now, :now, :now, 'f', 'open', :body, '{}')"
            ),
            {"keys": json.dumps({"sku": "MUG"}), "now": now, "body": body},
        )
        connection.execute(
            text(
                "INSERT INTO dead_letter_events (dead_letter_id, at, actor, action, detail) "
                "VALUES (1, :now, 'a', 'archived', '{}')"
            ),
            {"now": now},
        )

    upgrade(engine, "head")

    with engine.connect() as connection:
        keys = {tuple(row) for row in connection.execute(select(dead_letter_keys.c.name, dead_letter_keys.c.value))}
        events = connection.execute(text("SELECT count(*) FROM dead_letter_events")).scalar_one()
        found, _ = list_dead_letters(connection, DeadLetterFilter(keys=(("order_id", "ORD-1"),)))
    assert keys == {("order_id", "ORD-1"), ("payment_id", "PAY-1"), ("sku", "MUG")}
    assert events == 1, "adding columns must not rebuild the table and cascade its audit trail away"
    assert [row["id"] for row in found] == [1]
    engine.dispose()


def test_the_migration_can_be_rolled_back_and_applied_again(tmp_path: Any) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'roundtrip.db'}")
    upgrade(engine, "head")

    downgrade(engine, "0002")
    columns = {c["name"] for c in inspect(engine).get_columns("dead_letters")}
    assert "replay_of" not in columns and not inspect(engine).has_table("dead_letter_actions")
    upgrade(engine, "head")
    assert inspect(engine).has_table("dead_letter_replays")
    engine.dispose()


def _refused_headers(body: bytes, mark: ReplayMark | None) -> dict[str, Any]:
    original = {} if mark is None else mark.headers()
    return dead_letter_headers(
        classify(PermanentError("erp POST /orders answered 400")),
        dead_letter_id=dead_letter_id("orders", body, original),
        event={},
        original_headers=original,
        attempts=1,
        delivery_count=0,
        first_failed_ms=0,
        last_failed_ms=0,
    )


def test_a_mark_naming_no_known_record_or_action_is_archived_unlinked_so_the_drain_never_jams(engine: Engine) -> None:
    body = envelope(order_v2("ORD-1"))
    record = archive_record("orders", "orders.XQ", _refused_headers(body, ReplayMark(777, 888)), body)

    with engine.begin() as connection:
        new_id = archive(connection, record)

    with engine.connect() as connection:
        row = connection.execute(text("SELECT replay_of, replay_action_id, headers FROM dead_letters")).one()
    assert new_id is not None
    assert (row.replay_of, row.replay_action_id) == (None, None)
    assert "x-flowfleet-replay-of" in json.loads(row.headers), "the header is kept as it came"


def test_a_re_failure_redelivered_after_a_lost_confirm_is_archived_and_linked_once(engine: Engine) -> None:
    body = envelope(order_v2("ORD-2"))
    with engine.begin() as connection:
        original = archive(connection, archive_record("orders", "orders.XQ", _refused_headers(body, None), body))
        assert original is not None
        action_id = actions.create_action(connection, kind=actions.REPLAY, actor="a", reason="r")
        replays.claim_for_replay(
            connection, action_id=action_id, dead_letter_id=original, actor="a", reason="r", detail={}
        )
    mark = ReplayMark(original, action_id)
    again = archive_record("orders", "orders.XQ", _refused_headers(body, mark), body)

    with engine.begin() as connection:
        first = archive(connection, dict(again))
        second = archive(connection, dict(again))

    assert first is not None and first != original and second is None
    with engine.connect() as connection:
        replay = connection.execute(select(dead_letter_replays)).mappings().one()
    assert (replay["outcome"], replay["new_dead_letter_id"]) == (outcomes.FAILED_AGAIN, first)


def test_a_forged_replay_mark_on_a_fresh_event_changes_no_record_and_the_event_is_applied(fleet: FleetRun) -> None:
    fleet.run(envelope(order_v2("ORD-3", [("MUG-BLUE", 1)])), headers=ReplayMark(1, 1).headers())

    assert list(fleet.orders()) == ["ORD-3"]
    assert fleet.dead_letters() == []
