"""Each downstream system at a glance, for the console: `backlog()`'s counts beside its pause and breaker."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, select

from workers.settings import DOWNSTREAM_SYSTEMS
from workers.store.outbox.backlog import SystemBacklog, backlog
from workers.store.outbox.controls import Control, read_controls
from workers.store.tables import deliveries


def systems_overview(
    connection: Connection, *, now: datetime, objectives: Mapping[str, timedelta]
) -> list[dict[str, Any]]:
    """One row per known system (and any other the tables name): the CLI's backlog counts, the pause, the breaker."""
    counts = backlog(connection, now=now, objectives=objectives)
    controls = read_controls(connection)
    names = list(DOWNSTREAM_SYSTEMS) + sorted((set(counts) | set(controls)) - set(DOWNSTREAM_SYSTEMS))
    rows = []
    for name in names:
        stats = counts.get(name) or SystemBacklog(name)
        control = controls.get(name) or Control.idle(name)
        rows.append(
            {
                "system": name,
                "pending": stats.pending,
                "oldest_pending": stats.oldest_pending_at,
                "overdue": stats.overdue,
                "in_flight": stats.in_flight,
                "failing": stats.failing,
                "dead_lettered": stats.dead_lettered,
                "paused": control.paused,
                "paused_by": control.paused_by,
                "pause_reason": control.pause_reason,
                "paused_since": control.paused_since,
                "paused_until": control.paused_until,
                "breaker": control.breaker,
            }
        )
    return rows


def deliveries_of(connection: Connection, message_id: str, *, limit: int = 50) -> list[dict[str, Any]]:
    """The deliveries an event's effects recorded (by its message id), oldest first, without their bodies."""
    columns = [c for c in deliveries.c if c.name not in ("body", "business_keys")]
    query = select(*columns).where(deliveries.c.message_id == message_id).order_by(deliveries.c.id).limit(limit)
    return [dict(row) for row in connection.execute(query).mappings()]
