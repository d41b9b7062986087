"""Claiming due deliveries in one short transaction: the head of each ordering key, leased to one relay."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import BindParameter, Connection, Integer, Select, Update, and_, bindparam, exists, select
from sqlalchemy.orm import aliased

from workers.store.outbox.status import DEAD_LETTERED, PENDING
from workers.store.tables import deliveries

#: Statuses that hold back the later deliveries of their ordering key.
BLOCKING = (PENDING, DEAD_LETTERED)


def _due() -> Select[Any]:
    """Due deliveries of `:system` at `:now`, oldest first, at most `:limit`: built once, bound per call."""
    d = deliveries.c
    older = aliased(deliveries)
    now: BindParameter[datetime] = bindparam("now")
    return (
        select(deliveries)
        .where(
            d.system == bindparam("system"),
            d.status == PENDING,
            d.next_attempt_at <= now,
            d.lease_expires_at.is_(None) | (d.lease_expires_at < now),
            ~exists().where(
                and_(older.c.ordering_key == d.ordering_key, older.c.id < d.id, older.c.status.in_(BLOCKING))
            ),
        )
        .order_by(d.id)
        .limit(bindparam("limit", type_=Integer))
    )


def _lease() -> Update:
    """Lease the listed deliveries that are still pending and unleased at `:now`; return the ids it took."""
    d = deliveries.c
    now: BindParameter[datetime] = bindparam("now")
    return (
        deliveries.update()
        .where(
            d.id.in_(bindparam("ids", expanding=True)),
            d.status == PENDING,
            d.lease_expires_at.is_(None) | (d.lease_expires_at < now),
        )
        .values(lease_owner=bindparam("owner"), lease_expires_at=bindparam("until"))
        .returning(d.id)
    )


_DUE = _due()
#: PostgreSQL: the due rows locked, skipping those another relay is claiming.
_DUE_LOCKED = _DUE.with_for_update(skip_locked=True, of=deliveries)
_LEASE = _lease()


def claim_due(
    connection: Connection, system: str, *, owner: str, lease: timedelta, limit: int, now: datetime
) -> list[dict[str, Any]]:
    """Lease up to `limit` due deliveries of `system` to `owner`, oldest first, at most one per ordering key.

    Due: pending, its next attempt time come, no live lease, and no older delivery of its key still pending
    or dead-lettered. Two statements whatever the count: one select, one conditional UPDATE of the ids it
    found. On PostgreSQL the rows are locked with SKIP LOCKED, so relays never wait for each other; on
    SQLite (one writer at a time) a second claimer's UPDATE finds the lease already taken and skips the row.
    """
    due = _DUE_LOCKED if connection.dialect.name == "postgresql" else _DUE
    rows = connection.execute(due, {"system": system, "now": now, "limit": limit}).mappings().all()
    if not rows:
        return []
    until = now + lease
    taken = set(
        connection.execute(
            _LEASE, {"ids": [row["id"] for row in rows], "now": now, "owner": owner, "until": until}
        ).scalars()
    )
    return [dict(row) | {"lease_owner": owner, "lease_expires_at": until} for row in rows if row["id"] in taken]
