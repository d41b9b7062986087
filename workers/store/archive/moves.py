"""Operator status moves on dead letters (discard, restore) and the purge of closed ones, audited."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, update

from workers.store.archive import status
from workers.store.archive.actions import FINISHED, PURGE, create_action
from workers.store.archive.audit import audit, now
from workers.store.tables import dead_letters


def change_status(
    connection: Connection,
    ids: Iterable[int],
    *,
    from_status: str,
    to_status: str,
    actor: str,
    reason: str,
    action_id: int | None,
    event: str,
) -> list[int]:
    """Move each record that is in `from_status` to `to_status`, audited; return those that moved."""
    moment = now()
    closed_at = moment if to_status in status.CLOSED else None
    moved: list[int] = []
    for dead_letter_id in ids:
        result = connection.execute(
            update(dead_letters)
            .where(dead_letters.c.id == dead_letter_id, dead_letters.c.status == from_status)
            .values(status=to_status, closed_at=closed_at)
        )
        if result.rowcount == 1:
            moved.append(dead_letter_id)
            audit(connection, dead_letter_id, actor, event, reason=reason, detail={"action_id": action_id})
    return moved


def purgeable(connection: Connection, before: datetime) -> list[dict[str, Any]]:
    """Records resolved or discarded before `before`: the only ones a purge may remove."""
    record = dead_letters.c
    query = (
        select(record.id, record.flow, record.status, record.fingerprint, record.closed_at)
        .where(record.status.in_(status.CLOSED), record.closed_at < before)
        .order_by(record.id)
    )
    return [dict(row) for row in connection.execute(query).mappings()]


def purge(connection: Connection, ids: Sequence[int]) -> int:
    """Delete these records (their audit trail, keys and replay rows go with them); return how many."""
    removed = 0
    for start in range(0, len(ids), 500):
        chunk = list(ids[start : start + 500])
        removed += connection.execute(
            dead_letters.delete().where(dead_letters.c.id.in_(chunk), dead_letters.c.status.in_(status.CLOSED))
        ).rowcount
    return removed


def audited_purge(
    connection: Connection, doomed: Sequence[dict[str, Any]], *, before: datetime, actor: str, reason: str
) -> tuple[int, int]:
    """Purge the `purgeable` rows and record it as a `purge` action (counts per flow/status); (action, removed)."""
    ids = [int(row["id"]) for row in doomed]
    removed = purge(connection, ids)
    by_flow = Counter(f"{row['flow']}/{row['status']}" for row in doomed)
    action_id = create_action(
        connection,
        kind=PURGE,
        actor=actor,
        reason=reason,
        selection={"resolved_before": before.isoformat(), "ids": ids},
        status=FINISHED,
        counts={"purged": removed, **dict(by_flow)},
    )
    return action_id, removed
