"""Claiming due deliveries in one short transaction: the head of each ordering key, leased to one relay."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, exists, select
from sqlalchemy.orm import aliased

from workers.store.outbox.status import DEAD_LETTERED, PENDING
from workers.store.tables import deliveries

#: Statuses that hold back the later deliveries of their ordering key.
BLOCKING = (PENDING, DEAD_LETTERED)


def claim_due(
    connection: Connection, system: str, *, owner: str, lease: timedelta, limit: int, now: datetime
) -> list[dict[str, Any]]:
    """Lease up to `limit` due deliveries of `system` to `owner`, oldest first, at most one per ordering key.

    Due: pending, its next attempt time come, no live lease, and no older delivery of its key still pending
    or dead-lettered. On PostgreSQL the rows are locked with SKIP LOCKED, so relays never wait for each
    other; on SQLite (one writer at a time) the lease is set by a conditional UPDATE that a second claimer
    finds already taken.
    """
    d = deliveries.c
    older = aliased(deliveries)
    query = (
        select(deliveries)
        .where(
            d.system == system,
            d.status == PENDING,
            d.next_attempt_at <= now,
            d.lease_expires_at.is_(None) | (d.lease_expires_at < now),
            ~exists().where(
                and_(older.c.ordering_key == d.ordering_key, older.c.id < d.id, older.c.status.in_(BLOCKING))
            ),
        )
        .order_by(d.id)
        .limit(limit)
    )
    if connection.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True, of=deliveries)
    claimed = []
    for row in connection.execute(query).mappings().all():
        taken = connection.execute(
            deliveries.update()
            .where(
                d.id == row["id"],
                d.status == PENDING,
                d.lease_expires_at.is_(None) | (d.lease_expires_at < now),
            )
            .values(lease_owner=owner, lease_expires_at=now + lease)
        ).rowcount
        if taken == 1:
            claimed.append(dict(row) | {"lease_owner": owner, "lease_expires_at": now + lease})
    return claimed
