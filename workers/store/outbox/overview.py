"""Each downstream system at a glance, for the console: pending deliveries, the oldest, paused or not, the breaker."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, func, select

from workers.settings import DOWNSTREAM_SYSTEMS
from workers.store.outbox.status import PENDING
from workers.store.tables import deliveries, downstream_controls


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
    controls = {str(row["system"]): dict(row) for row in connection.execute(select(downstream_controls)).mappings()}
    names = list(DOWNSTREAM_SYSTEMS) + sorted((set(backlog) | set(controls)) - set(DOWNSTREAM_SYSTEMS))
    rows = []
    for name in names:
        count, oldest = backlog.get(name, (0, None))
        control = controls.get(name, {})
        rows.append(
            {
                "system": name,
                "pending": count,
                "oldest_pending": _aware(oldest),
                "paused": bool(control.get("paused")),
                "paused_by": control.get("paused_by"),
                "pause_reason": control.get("pause_reason"),
                "paused_until": _aware(control.get("paused_until")),
                "breaker": control.get("breaker") or "closed",
            }
        )
    return rows


def _aware(value: datetime | None) -> datetime | None:
    return value if value is None or value.tzinfo is not None else value.replace(tzinfo=UTC)


def deliveries_of(connection: Connection, message_id: str, *, limit: int = 50) -> list[dict[str, Any]]:
    """The deliveries an event's effects recorded (by its message id), oldest first, without their bodies."""
    columns = [c for c in deliveries.c if c.name not in ("body", "business_keys")]
    query = select(*columns).where(deliveries.c.message_id == message_id).order_by(deliveries.c.id).limit(limit)
    return [dict(row) for row in connection.execute(query).mappings()]
