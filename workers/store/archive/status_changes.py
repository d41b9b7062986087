"""One audited status change (discard, restore) as a whole: the action row, each record's move, the counts.

`dlq discard|restore` and the console's buttons both call it, so both leave the same audit trail.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from workers.store.archive.actions import FINISHED, create_action, update_counts
from workers.store.archive.moves import change_status


def audited_move(
    connection: Connection,
    *,
    kind: str,
    actor: str,
    reason: str,
    selection: dict[str, Any],
    ids: list[int],
    statuses: tuple[str, str],
    event: str,
) -> tuple[int, list[int]]:
    """Move `ids` from `statuses[0]` to `statuses[1]` under one new action; returns it and the ids moved."""
    action_id = create_action(connection, kind=kind, actor=actor, reason=reason, selection=selection, status=FINISHED)
    moved = change_status(
        connection,
        ids,
        from_status=statuses[0],
        to_status=statuses[1],
        actor=actor,
        reason=reason,
        action_id=action_id,
        event=event,
    )
    update_counts(connection, action_id, selected=len(ids), **{event: len(moved)})
    return action_id, moved
