"""Each downstream system at a glance, for the console: pending deliveries, the oldest, paused or not, the breaker."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, func, select

from workers.settings import DOWNSTREAM_SYSTEMS
from workers.store.outbox.controls import Control, aware, read_controls
from workers.store.outbox.status import PENDING
from workers.store.tables import deliveries


def systems_overview(connection: Connection) -> list[dict[str, Any]]:
    """One row per known system (and any other the tables name): backlog, oldest pending, pause, breaker."""
    backlog = {
        str(system): (int(count), oldest)
        for system, count, oldest in connection.execute(
            select(deliveries.c.system, func.count(), func.min(deliveries.c.created_at))
            .where(deliveries.c.status == PENDING)
            .group_by(deliveries.c.system)
        )
    }
    controls = read_controls(connection)
    names = list(DOWNSTREAM_SYSTEMS) + sorted((set(backlog) | set(controls)) - set(DOWNSTREAM_SYSTEMS))
    rows = []
    for name in names:
        count, oldest = backlog.get(name, (0, None))
        control = controls.get(name) or Control.idle(name)
        rows.append(
            {
                "system": name,
                "pending": count,
                "oldest_pending": aware(oldest),
                "paused": control.paused,
                "paused_by": control.paused_by,
                "pause_reason": control.pause_reason,
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
