"""What became of a claimed delivery, recorded in a short transaction, only while its lease is still held."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, Connection, func

from workers.store.outbox.status import DELIVERED, PENDING
from workers.store.tables import deliveries

_RELEASED = {"lease_owner": None, "lease_expires_at": None}


def _held(delivery_id: int, owner: str) -> list[ColumnElement[bool]]:
    return [deliveries.c.id == delivery_id, deliveries.c.lease_owner == owner, deliveries.c.status == PENDING]


def renew(connection: Connection, delivery_id: int, owner: str, *, held_until: datetime, until: datetime) -> bool:
    """Extend the lease this claim got (`held_until` tells it from a later claim by another thread of the same
    process) to `until`; False when it was taken over meanwhile."""
    still_this_claim = deliveries.c.lease_expires_at == held_until
    result = connection.execute(
        deliveries.update().where(*_held(delivery_id, owner), still_this_claim).values(lease_expires_at=until)
    )
    return result.rowcount == 1


def mark_delivered(connection: Connection, delivery_id: int, owner: str, now: datetime) -> bool:
    """The system confirmed it; False when the lease was lost (another relay took it over)."""
    result = connection.execute(
        deliveries.update()
        .where(*_held(delivery_id, owner))
        .values(status=DELIVERED, finished_at=now, attempts=deliveries.c.attempts + 1, last_error=None, **_RELEASED)
    )
    return result.rowcount == 1


def retry_later(
    connection: Connection, delivery_id: int, owner: str, *, at: datetime, error: str, now: datetime
) -> bool:
    """A transient failure: one attempt spent, the budget's clock started, due again `at`."""
    result = connection.execute(
        deliveries.update()
        .where(*_held(delivery_id, owner))
        .values(
            attempts=deliveries.c.attempts + 1,
            first_failed_at=func.coalesce(deliveries.c.first_failed_at, now),
            last_error=error[:2000],
            next_attempt_at=at,
            **_RELEASED,
        )
    )
    return result.rowcount == 1


def throttle(connection: Connection, delivery_id: int, owner: str, *, at: datetime, error: str) -> bool:
    """Held back by a 429 or the fleet's rate limit: due again `at`, without spending its budget."""
    result = connection.execute(
        deliveries.update()
        .where(*_held(delivery_id, owner))
        .values(throttles=deliveries.c.throttles + 1, last_error=error[:2000], next_attempt_at=at, **_RELEASED)
    )
    return result.rowcount == 1


def release(connection: Connection, delivery_ids: list[int], owner: str) -> int:
    """Give claimed deliveries back unsent (paused or the breaker opened meanwhile); nothing is spent."""
    if not delivery_ids:
        return 0
    result = connection.execute(
        deliveries.update()
        .where(deliveries.c.id.in_(delivery_ids), deliveries.c.lease_owner == owner, deliveries.c.status == PENDING)
        .values(**_RELEASED)
    )
    return int(result.rowcount)
