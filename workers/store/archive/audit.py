"""A dead letter's audit trail: one row per thing done to it, by whom and why, and the clock they share."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection

from workers.store.tables import dead_letter_events

#: Who the audit trail names for what the workers record.
WORKER_ACTOR = "flowfleet-worker"


def now() -> datetime:
    return datetime.now(UTC)


def audit(
    connection: Connection, dead_letter_id: int, actor: str, action: str, *, reason: str | None, detail: dict[str, Any]
) -> None:
    """One entry in a record's audit trail."""
    connection.execute(
        dead_letter_events.insert().values(
            dead_letter_id=dead_letter_id, at=now(), actor=actor[:200], action=action, reason=reason, detail=detail
        )
    )
