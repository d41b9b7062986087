"""Retention: delivered and superseded rows go after a while, in batches; an undelivered row is never purged."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, select

from workers.store.outbox.status import DELIVERED, SUPERSEDED
from workers.store.tables import deliveries


def purge_finished(connection: Connection, *, before: datetime, batch: int = 1000) -> int:
    """Delete up to `batch` delivered or superseded rows finished before `before`; return how many."""
    ids = (
        select(deliveries.c.id)
        .where(deliveries.c.status.in_((DELIVERED, SUPERSEDED)), deliveries.c.finished_at < before)
        .order_by(deliveries.c.id)
        .limit(batch)
    )
    found = [int(i) for i in connection.execute(ids).scalars()]
    if not found:
        return 0
    connection.execute(deliveries.delete().where(deliveries.c.id.in_(found)))
    return len(found)
