"""A week of the archive with known figures, for the weekly review's tests on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection

from workers.store.archive.review import Review
from workers.store.tables import dead_letter_actions, dead_letter_events, dead_letters, deliveries

DAY, HOUR = timedelta(days=1), timedelta(hours=1)


def _dead_letter(
    connection: Connection,
    record_id: int,
    *,
    flow: str,
    stage: str,
    fingerprint: str,
    archived: datetime,
    status: str = "open",
    closed: datetime | None = None,
    replay_of: int | None = None,
) -> None:
    connection.execute(
        dead_letters.insert().values(
            id=record_id,
            dead_letter_key=f"key-{record_id}",
            flow=flow,
            queue=f"{flow}.XQ",
            stage=stage,
            contract="order.created",
            business_keys={"order_id": f"ORD-{record_id}"},
            error_type=f"Error{fingerprint.upper()}",
            error_message="seeded",
            field_paths=[],
            attempts=1,
            first_failed_at=archived,
            last_failed_at=archived,
            archived_at=archived,
            fingerprint=fingerprint,
            status=status,
            body=b"{}",
            headers={},
            replay_of=replay_of,
            closed_at=closed,
        )
    )


def _event(connection: Connection, record_id: int, at: datetime, actor: str, action: str) -> None:
    connection.execute(
        dead_letter_events.insert().values(
            dead_letter_id=record_id, at=at, actor=actor, action=action, reason="seeded", detail={}
        )
    )


def _action(connection: Connection, kind: str, actor: str, at: datetime) -> None:
    connection.execute(
        dead_letter_actions.insert().values(
            kind=kind,
            actor=actor,
            reason=f"{kind} by {actor}",
            started_at=at,
            finished_at=at,
            status="finished",
            selection={},
            options={},
            counts={},
        )
    )


def _delivery(connection: Connection, system: str, status: str, created: datetime, **values: Any) -> None:
    connection.execute(
        deliveries.insert().values(
            system=system,
            method="POST",
            path="/orders",
            body={},
            idempotency_key=f"{system}-{status}-{created.isoformat()}",
            ordering_key="ORD-1",
            flow="orders",
            contract="order.created",
            version=2,
            message_id=f"m-{system}-{status}",
            dedup_key="ORD-1",
            business_keys={"order_id": "ORD-1"},
            status=status,
            created_at=created,
            next_attempt_at=created,
            attempts=1,
            **values,
        )
    )


def seed_week(connection: Connection, now: datetime) -> None:
    """What EXPECTED describes: four groups failing this week, three recoveries in orders, a decided and two
    undecided open groups, three operator actions in the window (two outside), a backlog at the ERP."""
    # orders: A fails twice (contract), resolved after 2 h and 10 min; B (handler) failed, was replayed by bob,
    # failed again into #3, and the chain was resolved 6 h after #2 was archived.
    _dead_letter(connection, 1, flow="orders", stage="contract", fingerprint="a", archived=now - 3 * DAY,
                 status="resolved", closed=now - 3 * DAY + 2 * HOUR)  # fmt: skip
    _dead_letter(connection, 2, flow="orders", stage="handler", fingerprint="b", archived=now - 2 * DAY,
                 status="resolved", closed=now - 2 * DAY + 6 * HOUR)  # fmt: skip
    _dead_letter(connection, 3, flow="orders", stage="handler", fingerprint="b", archived=now - 2 * DAY + HOUR,
                 status="resolved", closed=now - 2 * DAY + 6 * HOUR, replay_of=2)  # fmt: skip
    _event(connection, 2, now - 2 * DAY + HOUR / 2, "bob", "replayed")
    _dead_letter(connection, 4, flow="orders", stage="contract", fingerprint="a", archived=now - DAY,
                 status="resolved", closed=now - DAY + timedelta(minutes=10))  # fmt: skip
    # payments: C (delivery) open and undecided; D open, decided by alice's discard of an older record.
    _dead_letter(connection, 5, flow="payments", stage="delivery", fingerprint="c", archived=now - DAY)
    _dead_letter(connection, 6, flow="payments", stage="handler", fingerprint="d", archived=now - 2 * DAY)
    _dead_letter(connection, 7, flow="payments", stage="handler", fingerprint="d", archived=now - 10 * DAY,
                 status="discarded", closed=now - 9 * DAY)  # fmt: skip
    _event(connection, 7, now - 9 * DAY, "alice", "discarded")
    # Before the window: resolved long ago, and an old group still open and undecided (E, two records).
    _dead_letter(connection, 8, flow="orders", stage="contract", fingerprint="a", archived=now - 10 * DAY,
                 status="resolved", closed=now - 9 * DAY)  # fmt: skip
    _dead_letter(connection, 9, flow="orders", stage="contract", fingerprint="e", archived=now - 20 * DAY)
    _dead_letter(connection, 10, flow="orders", stage="contract", fingerprint="e", archived=now - 19 * DAY)
    _event(connection, 9, now - 20 * DAY, "flowfleet-worker", "archived")
    _action(connection, "discard", "alice", now - 9 * DAY)
    _action(connection, "replay", "alice", now - 8 * DAY)
    _action(connection, "replay", "bob", now - 2 * DAY + HOUR / 2)
    _action(connection, "repair", "alice", now - DAY)
    _action(connection, "pause", "carol", now - 12 * HOUR)
    # The ERP: one pending past its 15-minute objective, one dead-lettered (#5), one discarded before the
    # window (not a mismatch of this week); the channels delivered theirs.
    _delivery(connection, "erp", "pending", now - 3 * HOUR, first_failed_at=now - 2 * HOUR, last_error="503")
    _delivery(connection, "erp", "dead_lettered", now - DAY, dead_letter_id=5)
    _delivery(connection, "erp", "discarded", now - 9 * DAY, dead_letter_id=7)
    _delivery(connection, "channels", "delivered", now - DAY, finished_at=now - DAY)


#: The figures seed_week's archive gives for the seven days before `now`.
EXPECTED_FAILURES = [
    ("orders", "contract", "a", 2, 0),
    ("orders", "handler", "b", 2, 1),
    ("payments", "delivery", "c", 1, 0),
    ("payments", "handler", "d", 1, 0),
]
EXPECTED_RECOVERY = {"flow": "orders", "resolved": 3, "median_seconds": 7200.0, "worst_seconds": 21600.0, "worst_id": 2}
EXPECTED_ACTORS = {"alice": {"repair": 1}, "bob": {"replay": 1}, "carol": {"pause": 1}}
EXPECTED_UNDECIDED = {"c": 1, "e": 2}


def assert_the_seeded_week(found: Review) -> None:
    """The figures seed_week promises, on any database."""
    assert [(f.flow, f.stage, f.fingerprint, f.count, f.refailed) for f in found.failures] == EXPECTED_FAILURES
    assert [vars(r) for r in found.recoveries] == [EXPECTED_RECOVERY]
    actors: dict[str, dict[str, int]] = {}
    for row in found.interventions:
        actors.setdefault(row["actor"], {}).setdefault(row["kind"], 0)
        actors[row["actor"]][row["kind"]] += 1
    assert actors == EXPECTED_ACTORS
    assert [row["kind"] for row in found.interventions] == ["replay", "repair", "pause"], "oldest first"
    erp = found.backlog["erp"]
    assert (erp.pending, erp.overdue, erp.dead_lettered) == (1, 1, 1)
    assert found.mismatches["erp"] == {"overdue": 1, "dead_lettered": 1}, "the discard before the window is not in it"
    assert found.mismatches["channels"] == {}
    assert {g["fingerprint"]: g["count"] for g in found.undecided} == EXPECTED_UNDECIDED
