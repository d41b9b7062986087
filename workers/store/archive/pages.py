"""Pages of the archive for the console: newest first by a cursor (the last id seen), fast at any depth."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, select

from workers.store.archive.records import DeadLetterFilter, conditions
from workers.store.tables import dead_letter_actions, dead_letters

#: Columns a listing leaves out: large, or personal.
_HEAVY = ("body", "headers", "traceback")


def dead_letter_page(
    connection: Connection, where: DeadLetterFilter, *, before: int | None, limit: int
) -> tuple[list[dict[str, Any]], int | None]:
    """Up to `limit` matching records with ids below `before`, newest first, and the cursor of the next page.

    It walks the primary key, so page 2,000 costs what page 1 costs (no OFFSET).
    """
    found = conditions(where)
    if before is not None:
        found.append(dead_letters.c.id < before)
    columns = [c for c in dead_letters.c if c.name not in _HEAVY]
    rows = [
        dict(row)
        for row in connection.execute(
            select(*columns).where(*found).order_by(dead_letters.c.id.desc()).limit(limit + 1)
        ).mappings()
    ]
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (int(rows[-1]["id"]) if more and rows else None)


def action_page(
    connection: Connection, *, kind: str | None, actor: str | None, before: int | None, limit: int
) -> tuple[list[dict[str, Any]], int | None]:
    """The audit log newest first, optionally one kind or one actor, a page at a time by cursor."""
    action = dead_letter_actions.c
    query = select(dead_letter_actions)
    if kind:
        query = query.where(action.kind == kind)
    if actor:
        query = query.where(action.actor == actor)
    if before is not None:
        query = query.where(action.id < before)
    rows = [dict(row) for row in connection.execute(query.order_by(action.id.desc()).limit(limit + 1)).mappings()]
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (int(rows[-1]["id"]) if more and rows else None)


def action_owned_by(connection: Connection, owner: str) -> int | None:
    """The action a replayer (known by its owner token) created, once it has."""
    query = select(dead_letter_actions.c.id).where(dead_letter_actions.c.owner == owner)
    found = connection.execute(query.order_by(dead_letter_actions.c.id.desc()).limit(1)).scalar()
    return None if found is None else int(found)
