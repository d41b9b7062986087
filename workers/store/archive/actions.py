"""Operator actions on the dead-letter archive: one audited row per write, its lifecycle, and who runs it now.

Every write an operator makes (replay, repair, discard, restore, purge, export) is one row in
`dead_letter_actions`: who, when, why, the selection and options, the counts, how it ended. A replay's
runner beats a heartbeat on its row; a resume takes over only a stopped, interrupted or silent one.
What each replayed message became is in workers.store.archive.replays and .outcomes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, func, or_, select, update

from workers.store.archive.audit import now
from workers.store.tables import dead_letter_actions

# Action kinds and their statuses.
REPLAY, REPAIR, DISCARD, RESTORE, PURGE, EXPORT = "replay", "repair", "discard", "restore", "purge", "export"
RUNNING, FINISHED, STOPPED, INTERRUPTED = "running", "finished", "stopped", "interrupted"


def create_action(
    connection: Connection,
    *,
    kind: str,
    actor: str,
    reason: str | None,
    selection: dict[str, Any] | None = None,
    cutoff: datetime | None = None,
    options: dict[str, Any] | None = None,
    status: str = RUNNING,
    owner: str | None = None,
    counts: dict[str, Any] | None = None,
    note: str | None = None,
) -> int:
    moment = now()
    finished = None if status == RUNNING else moment
    statement = (
        dead_letter_actions.insert()
        .values(
            kind=kind,
            actor=actor[:200],
            reason=reason,
            started_at=moment,
            finished_at=finished,
            status=status,
            selection=selection or {},
            cutoff=cutoff,
            options=options or {},
            counts=counts or {},
            note=note,
            owner=owner,
            heartbeat_at=moment if status == RUNNING else None,
        )
        .returning(dead_letter_actions.c.id)
    )
    return int(connection.execute(statement).scalar_one())


def get_action(connection: Connection, action_id: int) -> dict[str, Any] | None:
    row = connection.execute(select(dead_letter_actions).where(dead_letter_actions.c.id == action_id)).mappings()
    found = row.first()
    return None if found is None else dict(found)


def list_actions(connection: Connection, *, limit: int = 50, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """One page of actions, newest first, and how many there are."""
    query = select(dead_letter_actions).order_by(dead_letter_actions.c.id.desc()).limit(limit).offset(offset)
    rows = [dict(row) for row in connection.execute(query).mappings()]
    total = connection.execute(select(func.count()).select_from(dead_letter_actions)).scalar_one()
    return rows, int(total)


def take_over(connection: Connection, action_id: int, owner: str, *, silent_since: datetime) -> dict[str, Any] | None:
    """Make `owner` the runner of a replay that is stopped, interrupted, or running but silent since
    `silent_since` (its process died). None when the action cannot be taken over."""
    action = dead_letter_actions.c
    result = connection.execute(
        update(dead_letter_actions)
        .where(
            action.id == action_id,
            action.kind.in_((REPLAY, REPAIR)),
            or_(
                action.status.in_((STOPPED, INTERRUPTED)),
                and_(action.status == RUNNING, or_(action.heartbeat_at.is_(None), action.heartbeat_at < silent_since)),
            ),
        )
        .values(status=RUNNING, owner=owner, heartbeat_at=now(), finished_at=None, note=None)
    )
    return get_action(connection, action_id) if result.rowcount == 1 else None


def heartbeat(connection: Connection, action_id: int, owner: str) -> bool:
    """Say the action's runner is alive; False when another process has taken it over."""
    action = dead_letter_actions.c
    result = connection.execute(
        update(dead_letter_actions)
        .where(action.id == action_id, action.owner == owner, action.status == RUNNING)
        .values(heartbeat_at=now())
    )
    return result.rowcount == 1


def finish_action(
    connection: Connection, action_id: int, owner: str | None, *, status: str, counts: dict[str, Any], note: str | None
) -> None:
    action = dead_letter_actions.c
    condition = action.id == action_id if owner is None else and_(action.id == action_id, action.owner == owner)
    connection.execute(
        update(dead_letter_actions)
        .where(condition)
        .values(status=status, counts=counts, note=note, finished_at=now(), heartbeat_at=now())
    )


def update_counts(connection: Connection, action_id: int, **changes: Any) -> None:
    """Merge `changes` into an action's counts (progress a resume must know about)."""
    action = get_action(connection, action_id)
    counts = dict((action or {}).get("counts") or {}) | changes
    connection.execute(update(dead_letter_actions).where(dead_letter_actions.c.id == action_id).values(counts=counts))


def update_options(connection: Connection, action_id: int, options: dict[str, Any]) -> None:
    connection.execute(update(dead_letter_actions).where(dead_letter_actions.c.id == action_id).values(options=options))
