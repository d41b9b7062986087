"""The dead-letter archive: insert drained dead letters once, list and read them with their audit trail."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, func, select

from workers.store.tables import dead_letter_events, dead_letters
from workers.store.upsert import insert_ignoring_conflict

SYSTEM_ACTOR = "flowfleet-drain"


@dataclass(frozen=True)
class DeadLetterFilter:
    """Which dead letters to read; every field narrows, None means any."""

    flow: str | None = None
    stage: str | None = None
    status: str | None = "open"
    contract: str | None = None
    message_id: str | None = None


def archive(connection: Connection, record: dict[str, Any]) -> int | None:
    """Keep one dead letter; a second copy of the same dead letter (a redelivery) is ignored.

    Returns the new record's id, or None when it was already archived.
    """
    new_id = insert_ignoring_conflict(connection, dead_letters, record, dead_letters.c.id)
    if new_id is not None:
        connection.execute(
            dead_letter_events.insert().values(
                dead_letter_id=new_id,
                at=datetime.now(UTC),
                actor=SYSTEM_ACTOR,
                action="archived",
                reason=f"{record['stage']}: {record['error_type']}",
                detail={"queue": record["queue"], "attempts": record["attempts"]},
            )
        )
    return None if new_id is None else int(new_id)


def list_dead_letters(
    connection: Connection, where: DeadLetterFilter, *, limit: int = 50, offset: int = 0
) -> tuple[list[dict[str, Any]], int]:
    """One page of matching dead letters, newest first, and the total that match."""
    conditions = [
        column == value
        for column, value in (
            (dead_letters.c.flow, where.flow),
            (dead_letters.c.stage, where.stage),
            (dead_letters.c.status, where.status),
            (dead_letters.c.contract, where.contract),
            (dead_letters.c.message_id, where.message_id),
        )
        if value is not None
    ]
    summary_columns = [c for c in dead_letters.c if c.name not in ("body", "headers", "traceback")]
    rows = connection.execute(
        select(*summary_columns).where(*conditions).order_by(dead_letters.c.id.desc()).limit(limit).offset(offset)
    ).mappings()
    total = connection.execute(select(func.count()).select_from(dead_letters).where(*conditions)).scalar_one()
    return [dict(row) for row in rows], int(total)


def get_dead_letter(connection: Connection, dead_letter_id: int) -> dict[str, Any] | None:
    """One dead letter with everything kept about it, and its audit trail under `history`."""
    row = connection.execute(select(dead_letters).where(dead_letters.c.id == dead_letter_id)).mappings().first()
    if row is None:
        return None
    history = connection.execute(
        select(dead_letter_events)
        .where(dead_letter_events.c.dead_letter_id == dead_letter_id)
        .order_by(dead_letter_events.c.id)
    ).mappings()
    return dict(row) | {"history": [dict(event) for event in history]}
