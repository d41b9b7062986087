"""A replay's bookkeeping: each dead letter claimed before its copy is published, and what the copies became.

Why it is built this way:
- A replay *claims* each dead letter before publishing it: a compare-and-set of the record's status
  from `open` to `replayed`, committed with a `dead_letter_replays` row. Two operators replaying the
  same group race on that update; the database lets exactly one win (PostgreSQL re-checks the WHERE
  after the winner commits; SQLite serialises writers), so no dead letter is sent by both. It needs
  no extra status, no lock held across the publish, and works the same on SQLite and PostgreSQL.
- `published_at` is set only after the broker confirmed the copy. A claim without it, after a crash,
  is "in doubt": the resume waits for its outcome and sends it again only if none comes; the dedup key
  keeps a second copy to one effect.
- Outcomes are written by the worker side (workers.store.archive.outcomes); this module reads them back.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select, update

from workers.store.archive import status
from workers.store.archive.actions import REPAIR
from workers.store.archive.audit import audit, now
from workers.store.archive.outcomes import (
    FAILED_AGAIN,
    NOT_PUBLISHED,
    OUTCOMES,
    PENDING,
    replay_key,
)
from workers.store.tables import dead_letter_actions, dead_letter_replays, dead_letters


def claim_for_replay(
    connection: Connection,
    *,
    action_id: int,
    dead_letter_id: int,
    actor: str,
    reason: str | None,
    detail: dict[str, Any],
    body: bytes | None = None,
) -> bool:
    """Take an open dead letter for this action (open -> replayed), audited; False when someone else has it.

    Commit before publishing: the claim is what keeps a second operator from sending it too. The audit
    entry is written here, so the trail reads in causal order (the outcome can come before the confirm).
    """
    taken = connection.execute(
        update(dead_letters)
        .where(dead_letters.c.id == dead_letter_id, dead_letters.c.status == status.OPEN)
        .values(status=status.REPLAYED, closed_at=None)
    )
    if taken.rowcount != 1:
        return False
    key = replay_key(action_id, dead_letter_id)
    values = {"claimed_at": now(), "published_at": None, "outcome": PENDING, "outcome_at": None, "body": body}
    existing = connection.execute(select(dead_letter_replays.c.action_id).where(*key)).first()
    if existing is None:
        connection.execute(
            dead_letter_replays.insert().values(action_id=action_id, dead_letter_id=dead_letter_id, **values)
        )
    else:  # sent by this action before, but the broker did not take it: a fresh try
        connection.execute(update(dead_letter_replays).where(*key).values(note=None, **values))
    event = "repaired" if detail.get("kind") == REPAIR else "replayed"
    audit(connection, dead_letter_id, actor, event, reason=reason, detail=detail | {"action_id": action_id})
    return True


def mark_published(connection: Connection, *, action_id: int, dead_letter_id: int) -> None:
    """The broker confirmed the copy."""
    connection.execute(
        update(dead_letter_replays).where(*replay_key(action_id, dead_letter_id)).values(published_at=now())
    )


def mark_not_published(connection: Connection, *, action_id: int, dead_letter_id: int, actor: str, why: str) -> None:
    """The broker did not take the copy: the record is open again (unless an outcome has come in meanwhile)."""
    result = connection.execute(
        update(dead_letter_replays)
        .where(*replay_key(action_id, dead_letter_id), dead_letter_replays.c.outcome == PENDING)
        .values(outcome=NOT_PUBLISHED, outcome_at=now(), note=why[:2000])
    )
    if result.rowcount != 1:
        return
    connection.execute(
        update(dead_letters)
        .where(dead_letters.c.id == dead_letter_id, dead_letters.c.status == status.REPLAYED)
        .values(status=status.OPEN)
    )
    audit(connection, dead_letter_id, actor, "replay-not-published", reason=why, detail={"action_id": action_id})


def in_doubt(connection: Connection, action_id: int) -> list[int]:
    """Dead letters this action claimed whose publish was never confirmed and whose outcome is unknown."""
    replay = dead_letter_replays.c
    query = (
        select(replay.dead_letter_id)
        .where(replay.action_id == action_id, replay.published_at.is_(None), replay.outcome == PENDING)
        .order_by(replay.claimed_at, replay.dead_letter_id)
    )
    return [int(row) for row in connection.execute(query).scalars()]


def replay_row(connection: Connection, action_id: int, dead_letter_id: int) -> dict[str, Any] | None:
    row = connection.execute(select(dead_letter_replays).where(*replay_key(action_id, dead_letter_id))).mappings()
    found = row.first()
    return None if found is None else dict(found)


def outcome_counts(connection: Connection, action_id: int) -> dict[str, int]:
    """How many of the action's messages ended how, and how many were confirmed published."""
    replay = dead_letter_replays.c
    rows = connection.execute(
        select(replay.outcome, func.count()).where(replay.action_id == action_id).group_by(replay.outcome)
    ).all()
    counts = dict.fromkeys(OUTCOMES, 0)
    counts.update({str(outcome): int(count) for outcome, count in rows})
    counts["published"] = int(
        connection.execute(
            select(func.count()).where(replay.action_id == action_id, replay.published_at.is_not(None))
        ).scalar_one()
    )
    return counts


def first_outcomes(connection: Connection, action_id: int, count: int) -> list[str]:
    """The outcomes of the first `count` messages the action published (its canary)."""
    replay = dead_letter_replays.c
    query = (
        select(replay.outcome)
        .where(replay.action_id == action_id, replay.published_at.is_not(None))
        .order_by(replay.published_at, replay.dead_letter_id)
        .limit(count)
    )
    return [str(outcome) for outcome in connection.execute(query).scalars()]


def refailures(connection: Connection, action_id: int, *, since: datetime | None = None) -> list[dict[str, Any]]:
    """The action's messages that failed again, each with the record it became and both fingerprints."""
    old, new = dead_letters.alias("old"), dead_letters.alias("new")
    replay = dead_letter_replays.c
    query = (
        select(
            replay.dead_letter_id,
            replay.new_dead_letter_id,
            replay.outcome_at,
            old.c.fingerprint.label("fingerprint_before"),
            new.c.fingerprint.label("fingerprint"),
            new.c.stage,
            new.c.error_type,
            new.c.error_message,
        )
        .select_from(
            dead_letter_replays.join(old, old.c.id == replay.dead_letter_id).outerjoin(
                new, new.c.id == replay.new_dead_letter_id
            )
        )
        .where(replay.action_id == action_id, replay.outcome == FAILED_AGAIN)
        .order_by(replay.outcome_at)
    )
    if since is not None:
        query = query.where(replay.outcome_at >= since)
    rows = [dict(row) for row in connection.execute(query).mappings()]
    for row in rows:
        row["same_fingerprint"] = row["fingerprint"] == row["fingerprint_before"]
    return rows


def action_replays(connection: Connection, action_id: int) -> list[dict[str, Any]]:
    """Every message the action sent (or tried to), with its outcome, in the order they were claimed."""
    replay = dead_letter_replays.c
    query = (
        select(
            replay.dead_letter_id,
            dead_letters.c.flow,
            replay.claimed_at,
            replay.published_at,
            replay.outcome,
            replay.outcome_at,
            replay.new_dead_letter_id,
            replay.note,
        )
        .select_from(dead_letter_replays.join(dead_letters, dead_letters.c.id == replay.dead_letter_id))
        .where(replay.action_id == action_id)
        .order_by(replay.claimed_at, replay.dead_letter_id)
    )
    return [dict(row) for row in connection.execute(query).mappings()]


def replays_of(connection: Connection, dead_letter_id: int) -> list[dict[str, Any]]:
    """Every replay or repair of one dead letter, with the action's who and why and the message's outcome."""
    replay, action = dead_letter_replays.c, dead_letter_actions.c
    query = (
        select(
            replay.action_id,
            action.kind,
            action.actor,
            action.reason,
            replay.claimed_at,
            replay.published_at,
            replay.outcome,
            replay.outcome_at,
            replay.new_dead_letter_id,
            replay.body,
            replay.note,
        )
        .select_from(dead_letter_replays.join(dead_letter_actions, action.id == replay.action_id))
        .where(replay.dead_letter_id == dead_letter_id)
        .order_by(replay.claimed_at)
    )
    return [dict(row) for row in connection.execute(query).mappings()]


def copy_source(connection: Connection, dead_letter_id: int) -> dict[str, Any]:
    """What a replayed copy is made of: the record's flow, queue, contract, body and headers."""
    record = dead_letters.c
    query = select(record.flow, record.queue, record.contract, record.body, record.headers).where(
        record.id == dead_letter_id
    )
    return dict(connection.execute(query).mappings().one())
