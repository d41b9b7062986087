"""Effects applied here whose delivery the downstream system has not confirmed: what `flowfleet reconcile` lists.

A delivery is a mismatch when it is pending past its system's objective, dead-lettered (stage
`delivery`, waiting for an operator), or discarded (an operator decided it must never be sent).
Delivered and superseded rows are not: a superseded request was replaced by a newer one carrying the
latest value, which is itself delivered or listed here.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, case, func, or_, select

from workers.store.outbox.backlog import overdue_cutoff
from workers.store.outbox.controls import aware
from workers.store.outbox.status import DEAD_LETTERED, DISCARDED, PENDING
from workers.store.tables import dead_letter_events, deliveries

#: Why a delivery is not confirmed (the `reason` label of flowfleet_deliveries_unconfirmed).
OVERDUE, REASONS = "overdue", ("overdue", DEAD_LETTERED, DISCARDED)
#: A discarded delivery stays in the exporter's count this long after the discard: a day's reconciliation sees it.
DISCARDED_REPORTED_FOR = timedelta(hours=24)


@dataclass(frozen=True)
class Unconfirmed:
    """One delivery that is not confirmed, with the event that caused it."""

    id: int
    system: str
    reason: str  # overdue | dead_lettered | discarded
    method: str
    path: str
    flow: str
    contract: str
    message_id: str
    dedup_key: str
    business_keys: dict[str, Any]
    created_at: datetime
    attempts: int
    last_error: str | None
    dead_letter_id: int | None
    #: Who discarded it and why (from its dead letter's audit trail), for discarded ones.
    discarded_by: str | None = None
    discard_reason: str | None = None


def unconfirmed(
    connection: Connection,
    *,
    now: datetime,
    since: datetime,
    objectives: Mapping[str, timedelta],
    systems: Sequence[str] | None = None,
) -> list[Unconfirmed]:
    """Mismatches among the deliveries recorded since `since`, oldest first."""
    d = deliveries.c
    condition = and_(
        d.created_at >= since,
        or_(
            and_(d.status == PENDING, d.created_at < overdue_cutoff(objectives, now)),
            d.status.in_((DEAD_LETTERED, DISCARDED)),
        ),
    )
    if systems:
        condition = and_(condition, d.system.in_(tuple(systems)))
    rows = connection.execute(select(deliveries).where(condition).order_by(d.created_at, d.id)).mappings().all()
    discards = _discards(
        connection, [int(r["dead_letter_id"]) for r in rows if r["status"] == DISCARDED and r["dead_letter_id"]]
    )
    found: list[Unconfirmed] = []
    for row in rows:
        actor, why = discards.get(row["dead_letter_id"], (None, None))
        found.append(
            Unconfirmed(
                id=int(row["id"]),
                system=row["system"],
                reason=OVERDUE if row["status"] == PENDING else row["status"],
                method=row["method"],
                path=row["path"],
                flow=row["flow"],
                contract=row["contract"],
                message_id=row["message_id"],
                dedup_key=row["dedup_key"],
                business_keys=dict(row["business_keys"] or {}),
                created_at=aware(row["created_at"]) or now,
                attempts=int(row["attempts"] or 0),
                last_error=row["last_error"],
                dead_letter_id=row["dead_letter_id"],
                discarded_by=actor,
                discard_reason=why,
            )
        )
    return found


def _discards(connection: Connection, dead_letter_ids: list[int]) -> dict[int, tuple[str, str | None]]:
    """The latest `discarded` entry of each dead letter's audit trail: who and why."""
    if not dead_letter_ids:
        return {}
    e = dead_letter_events.c
    rows = connection.execute(
        select(e.dead_letter_id, e.actor, e.reason)
        .where(e.dead_letter_id.in_(dead_letter_ids), e.action == "discarded")
        .order_by(e.id)
    ).all()
    return {int(dead_letter_id): (actor, reason) for dead_letter_id, actor, reason in rows}


def unconfirmed_counts(
    connection: Connection, *, now: datetime, objectives: Mapping[str, timedelta]
) -> Counter[tuple[str, str]]:
    """Per (system, reason): overdue and dead-lettered deliveries whatever their age (they still need someone),
    and deliveries discarded within DISCARDED_REPORTED_FOR. One grouped SELECT."""
    d = deliveries.c
    reason = case((d.status == PENDING, OVERDUE), else_=d.status)
    discarded_lately = and_(
        d.status == DISCARDED, func.coalesce(d.finished_at, d.created_at) >= now - DISCARDED_REPORTED_FOR
    )
    rows = connection.execute(
        select(d.system, reason, func.count())
        .where(
            or_(
                and_(d.status == PENDING, d.created_at < overdue_cutoff(objectives, now)),
                d.status == DEAD_LETTERED,
                discarded_lately,
            )
        )
        .group_by(d.system, reason)
    ).all()
    return Counter({(system, str(why)): int(count) for system, why, count in rows})
