"""The operators' SQL over the outbox: backlog per system, pause and resume audited, and what is not confirmed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, select

from tests.support.deliveries import record_delivery
from workers.store.archive.actions import list_actions
from workers.store.outbox import controls
from workers.store.outbox.backlog import backlog
from workers.store.outbox.status import DEAD_LETTERED, DELIVERED, DISCARDED, PENDING, SUPERSEDED
from workers.store.outbox.unconfirmed import unconfirmed, unconfirmed_counts
from workers.store.tables import dead_letter_events, dead_letters, downstream_controls

NOW = datetime(2026, 12, 2, 4, 0, tzinfo=UTC)
OBJECTIVES = {
    "erp": timedelta(minutes=15),
    "channels": timedelta(minutes=5),
    "notify": timedelta(hours=1),
    "payments": timedelta(minutes=15),
}


def test_the_backlog_counts_each_systems_pending_oldest_overdue_in_flight_failing_and_dead_letters(
    engine: Engine,
) -> None:
    record_delivery(engine, now=NOW, age=timedelta(minutes=40))
    record_delivery(engine, now=NOW, age=timedelta(minutes=20), first_failed_at=NOW, last_error="erp answered 503")
    record_delivery(
        engine, now=NOW, age=timedelta(minutes=1), lease_owner="w1", lease_expires_at=NOW + timedelta(seconds=30)
    )
    record_delivery(
        engine, now=NOW, age=timedelta(minutes=2), lease_owner="w0", lease_expires_at=NOW - timedelta(seconds=1)
    )
    record_delivery(engine, now=NOW, age=timedelta(hours=2), status=DEAD_LETTERED)
    record_delivery(engine, now=NOW, age=timedelta(hours=3), status=SUPERSEDED)
    for minutes in (1, 3, 7, 14, 20):
        record_delivery(
            engine, now=NOW, age=timedelta(hours=1), status=DELIVERED, finished_at=NOW - timedelta(minutes=minutes)
        )
    record_delivery(engine, now=NOW, age=timedelta(minutes=6), system="channels")

    with engine.connect() as connection:
        found = backlog(connection, now=NOW, objectives=OBJECTIVES)

    erp = found["erp"]
    assert (erp.pending, erp.overdue, erp.in_flight, erp.failing, erp.dead_lettered) == (4, 2, 1, 1, 1)
    assert erp.oldest_pending_seconds(NOW) == 40 * 60
    assert erp.delivered_recently == (2, 4)
    assert erp.per_minute() == (2 / 5, 4 / 15)
    assert (found["channels"].pending, found["channels"].overdue) == (1, 1), "channels' objective is 5 min"
    assert found["notify"].pending == 0 and found["notify"].oldest_pending_at is None


def test_a_pause_is_held_in_the_controls_and_audited_and_a_second_one_keeps_its_start(engine: Engine) -> None:
    until = NOW + timedelta(hours=2)
    with engine.begin() as connection:
        first = controls.pause(connection, "erp", actor="ana", reason="ERP upgrade 4.2", until=until, now=NOW)
    later = NOW + timedelta(minutes=30)
    with engine.begin() as connection:
        second = controls.pause(connection, "erp", actor="bo", reason="upgrade overran", until=None, now=later)

    with engine.connect() as connection:
        control = controls.read_control(connection, "erp")
        others = controls.read_control(connection, "payments")
        actions, total = list_actions(connection)

    assert (first.outcome, second.outcome) == (controls.PAUSED, controls.UPDATED)
    assert control.paused and control.paused_since == NOW and control.paused_until is None
    assert (control.paused_by, control.pause_reason) == ("bo", "upgrade overran")
    assert not others.paused
    assert total == 2
    newest, oldest = actions
    assert (oldest["kind"], oldest["actor"], oldest["reason"], oldest["status"]) == (
        "pause",
        "ana",
        "ERP upgrade 4.2",
        "finished",
    )
    assert oldest["selection"] == {"system": "erp"} and oldest["options"] == {"until": until.isoformat()}
    assert oldest["counts"]["outcome"] == "paused"
    assert newest["counts"] == {"outcome": "updated", "paused_since": NOW.isoformat(), "paused_by": "ana"}


def test_resume_clears_the_pause_and_a_resume_of_a_running_system_is_recorded_as_changing_nothing(
    engine: Engine,
) -> None:
    with engine.begin() as connection:
        controls.pause(connection, "notify", actor="ana", reason="mail provider incident", until=None, now=NOW)
    with engine.begin() as connection:
        resumed = controls.resume(
            connection, "notify", actor="ana", reason="provider is back", now=NOW + timedelta(minutes=75)
        )
    with engine.begin() as connection:
        again = controls.resume(
            connection, "notify", actor="bo", reason="just in case", now=NOW + timedelta(minutes=80)
        )

    with engine.connect() as connection:
        control = controls.read_control(connection, "notify")
        actions, _total = list_actions(connection)

    assert not control.paused and control.paused_since is None and control.paused_by is None
    assert resumed.outcome == controls.RESUMED and resumed.before.paused
    assert again.outcome == controls.NOT_PAUSED
    assert [a["kind"] for a in actions] == ["resume", "resume", "pause"]
    assert actions[1]["note"] == "notify resumed after 1 h 15 min"
    assert actions[0]["note"] == "notify was not paused: nothing changed"


def test_a_system_without_a_row_gets_one_on_its_first_pause(engine: Engine) -> None:
    with engine.begin() as connection:
        controls.pause(connection, "warehouse", actor="ana", reason="new system", until=None, now=NOW)
    with engine.connect() as connection:
        assert controls.read_control(connection, "warehouse").paused


def _dead_letter_discarded_by(engine: Engine, actor: str, reason: str) -> int:
    with engine.begin() as connection:
        dead_letter_id = int(
            connection.execute(
                dead_letters.insert()
                .values(
                    dead_letter_key="dl-1",
                    flow="payments",
                    queue="deliveries",
                    stage="delivery",
                    business_keys={},
                    error_type="PermanentError",
                    error_message="erp answered 422",
                    field_paths=[],
                    attempts=1,
                    first_failed_at=NOW,
                    last_failed_at=NOW,
                    archived_at=NOW,
                    fingerprint="fp",
                    status="discarded",
                    body=b"{}",
                    headers={},
                )
                .returning(dead_letters.c.id)
            ).scalar_one()
        )
        connection.execute(
            dead_letter_events.insert().values(
                dead_letter_id=dead_letter_id, at=NOW, actor=actor, action="discarded", reason=reason, detail={}
            )
        )
    return dead_letter_id


def test_unconfirmed_lists_overdue_dead_lettered_and_discarded_deliveries_not_superseded_or_recent_ones(
    engine: Engine,
) -> None:
    overdue = record_delivery(engine, now=NOW, age=timedelta(minutes=47), attempts=9, last_error="erp answered 503")
    record_delivery(engine, now=NOW, age=timedelta(minutes=3))  # within the objective
    refund = record_delivery(
        engine,
        now=NOW,
        age=timedelta(hours=2),
        status=DEAD_LETTERED,
        contract="payment.refunded",
        business_keys={"refund_id": "REF-17", "payment_id": "PAY-9", "order_id": "ORD-9"},
        dead_letter_id=812,
    )
    discarded_letter = _dead_letter_discarded_by(engine, "ana", "staging test order")
    discarded = record_delivery(
        engine, now=NOW, age=timedelta(hours=3), status=DISCARDED, dead_letter_id=discarded_letter, system="payments"
    )
    record_delivery(engine, now=NOW, age=timedelta(hours=1), status=SUPERSEDED, system="channels")
    record_delivery(engine, now=NOW, age=timedelta(hours=1), status=DELIVERED)
    record_delivery(engine, now=NOW, age=timedelta(days=3), status=DEAD_LETTERED)  # before --since

    with engine.connect() as connection:
        found = unconfirmed(connection, now=NOW, since=NOW - timedelta(hours=24), objectives=OBJECTIVES)
        only_erp = unconfirmed(
            connection, now=NOW, since=NOW - timedelta(hours=24), objectives=OBJECTIVES, systems=["erp"]
        )

    assert [(item.id, item.reason) for item in found] == [
        (discarded, "discarded"),
        (refund, "dead_lettered"),
        (overdue, "overdue"),
    ]
    assert found[0].discarded_by == "ana" and found[0].discard_reason == "staging test order"
    assert found[1].business_keys["refund_id"] == "REF-17" and found[1].dead_letter_id == 812
    assert found[2].attempts == 9 and found[2].last_error == "erp answered 503"
    assert {item.system for item in only_erp} == {"erp"} and len(only_erp) == 2


@pytest.mark.parametrize("discarded_ago", [timedelta(hours=1), timedelta(hours=30)])
def test_the_exporters_count_keeps_open_mismatches_whatever_their_age_and_a_discard_for_a_day(
    engine: Engine, discarded_ago: timedelta
) -> None:
    record_delivery(engine, now=NOW, age=timedelta(days=5), status=DEAD_LETTERED)
    record_delivery(engine, now=NOW, age=timedelta(days=2))
    record_delivery(engine, now=NOW, age=timedelta(minutes=1))
    record_delivery(
        engine, now=NOW, age=timedelta(days=2), status=DISCARDED, system="payments", finished_at=NOW - discarded_ago
    )

    with engine.connect() as connection:
        counts = unconfirmed_counts(connection, now=NOW, objectives=OBJECTIVES)

    assert counts[("erp", DEAD_LETTERED)] == 1
    assert counts[("erp", "overdue")] == 1
    assert counts[("payments", DISCARDED)] == (1 if discarded_ago < timedelta(hours=24) else 0)
    assert PENDING not in {reason for _system, reason in counts}


def test_pause_and_resume_leave_the_breaker_columns_to_the_relay(engine: Engine) -> None:
    with engine.begin() as connection:
        controls.pause(connection, "erp", actor="ana", reason="window", until=None, now=NOW)
        controls.resume(connection, "erp", actor="ana", reason="done", now=NOW)
    with engine.connect() as connection:
        row = (
            connection.execute(select(downstream_controls).where(downstream_controls.c.system == "erp"))
            .mappings()
            .one()
        )

    assert (row["breaker"], row["consecutive_failures"], row["breaker_opened_at"]) == ("closed", 0, None)
