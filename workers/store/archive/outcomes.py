"""What became of each replayed copy, written by the worker side: applied, duplicate, or failed again.

`applied`/`duplicate` are recorded by the pipeline in the transaction of the dedup claim, `failed_again`
by the archive when the copy's dead letter is stored. Nothing polls the broker. A copy applied resolves
its record and every record it was replayed from.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, select, update

from workers.messaging.replay_headers import ReplayMark
from workers.store.archive import status
from workers.store.archive.audit import WORKER_ACTOR, audit, now
from workers.store.tables import dead_letter_replays, dead_letters

# Per-message outcomes of a replay.
PENDING, APPLIED, DUPLICATE, FAILED_AGAIN, NOT_PUBLISHED = (
    "pending",
    "applied",
    "duplicate",
    "failed_again",
    "not_published",
)
OUTCOMES = (PENDING, APPLIED, DUPLICATE, FAILED_AGAIN, NOT_PUBLISHED)
#: A chain of replays of replays is followed this far when its newest copy resolves it.
MAX_CHAIN = 100


def record_replay_outcome(connection: Connection, mark: ReplayMark, outcome: str) -> bool:
    """A replayed copy was applied or found a duplicate: record it and resolve its record.

    Called by the pipeline inside the dedup claim's transaction, so the outcome commits with the
    effect or not at all. False when the mark names no pending replay (a copy that already has its
    outcome, or a forged header): nothing is changed then.
    """
    result = connection.execute(
        update(dead_letter_replays)
        .where(
            *replay_key(mark.action_id, mark.dead_letter_id),
            dead_letter_replays.c.outcome.in_((PENDING, NOT_PUBLISHED)),
        )
        .values(outcome=outcome, outcome_at=now())
    )
    if result.rowcount != 1:
        return False
    why = "its replayed copy was applied" if outcome == APPLIED else "its replayed copy was already applied"
    audit(
        connection,
        mark.dead_letter_id,
        WORKER_ACTOR,
        f"replay-{outcome}",
        reason=why,
        detail={"action_id": mark.action_id},
    )
    _resolve_chain(connection, mark.dead_letter_id, why)
    return True


def link_refailure(connection: Connection, mark: ReplayMark, new_dead_letter_id: int, actor: str) -> bool:
    """A replayed copy failed again and was archived as `new_dead_letter_id`: record it against the replay."""
    result = connection.execute(
        update(dead_letter_replays)
        .where(
            *replay_key(mark.action_id, mark.dead_letter_id),
            dead_letter_replays.c.outcome.in_((PENDING, NOT_PUBLISHED)),
        )
        .values(outcome=FAILED_AGAIN, outcome_at=now(), new_dead_letter_id=new_dead_letter_id)
    )
    if result.rowcount != 1:
        return False
    connection.execute(
        update(dead_letters)
        .where(dead_letters.c.id == mark.dead_letter_id, dead_letters.c.status == status.OPEN)
        .values(status=status.REPLAYED)
    )
    audit(
        connection,
        mark.dead_letter_id,
        actor,
        "replay-failed-again",
        reason=f"its replayed copy failed again: dead letter #{new_dead_letter_id}",
        detail={"action_id": mark.action_id, "new_dead_letter_id": new_dead_letter_id},
    )
    return True


def _resolve_chain(connection: Connection, dead_letter_id: int, why: str) -> None:
    """Resolve the record, then each record it is a replayed copy of (they failed again into it)."""
    moment, current = now(), dead_letter_id
    allowed: tuple[str, ...] = (status.REPLAYED, status.OPEN)
    for _ in range(MAX_CHAIN):
        changed = connection.execute(
            update(dead_letters)
            .where(dead_letters.c.id == current, dead_letters.c.status.in_(allowed))
            .values(status=status.RESOLVED, closed_at=moment)
        )
        if current != dead_letter_id and changed.rowcount == 1:
            audit(
                connection, current, WORKER_ACTOR, "resolved", reason=f"its replay #{dead_letter_id}: {why}", detail={}
            )
        parent = connection.execute(select(dead_letters.c.replay_of).where(dead_letters.c.id == current)).scalar()
        if parent is None:
            return
        current, allowed = int(parent), (status.REPLAYED,)


def replay_key(action_id: int, dead_letter_id: int) -> tuple[Any, Any]:
    return dead_letter_replays.c.action_id == action_id, dead_letter_replays.c.dead_letter_id == dead_letter_id
