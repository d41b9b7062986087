"""Operator actions on the dead-letter archive, and what became of each message a replay sent, in SQL.

Why it is built this way:
- Every write an operator makes (replay, repair, discard, restore, purge, export) is one row in
  `dead_letter_actions`: who, when, why, the selection and options, the counts, how it ended.
- A replay *claims* each dead letter before publishing it: a compare-and-set of the record's status
  from `open` to `replayed`, committed with a `dead_letter_replays` row. Two operators replaying the
  same group race on that update; the database lets exactly one win (PostgreSQL re-checks the WHERE
  after the winner commits; SQLite serialises writers), so no dead letter is sent by both. It needs
  no extra status, no lock held across the publish, and works the same on SQLite and PostgreSQL.
- `published_at` is set only after the broker confirmed the copy. A claim without it, after a crash,
  is "in doubt": the resume waits for its outcome and sends it again only if none comes; the dedup key
  keeps a second copy to one effect.
- Outcomes are written by the worker side: `applied`/`duplicate` by the pipeline in the transaction
  of the dedup claim, `failed_again` by the archive when the copy's dead letter is stored. Nothing
  polls the broker. A copy applied resolves its record and every record it was replayed from.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, and_, func, or_, select, update

from workers.messaging.replay_headers import ReplayMark
from workers.store.tables import dead_letter_actions, dead_letter_events, dead_letter_replays, dead_letters

# Action kinds and their statuses.
REPLAY, REPAIR, DISCARD, RESTORE, PURGE, EXPORT = "replay", "repair", "discard", "restore", "purge", "export"
RUNNING, FINISHED, STOPPED, INTERRUPTED = "running", "finished", "stopped", "interrupted"
# Per-message outcomes of a replay.
PENDING, APPLIED, DUPLICATE, FAILED_AGAIN, NOT_PUBLISHED = (
    "pending",
    "applied",
    "duplicate",
    "failed_again",
    "not_published",
)
#: Who the audit trail names for what the workers record.
WORKER_ACTOR = "flowfleet-worker"
#: A chain of replays of replays is followed this far when its newest copy resolves it.
MAX_CHAIN = 100


def now() -> datetime:
    return datetime.now(UTC)


# -- actions ---------------------------------------------------------------------------------------


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


# -- claims and publishing -----------------------------------------------------------------------


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
        .where(dead_letters.c.id == dead_letter_id, dead_letters.c.status == "open")
        .values(status="replayed", closed_at=None)
    )
    if taken.rowcount != 1:
        return False
    key = _replay_key(action_id, dead_letter_id)
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
        update(dead_letter_replays).where(*_replay_key(action_id, dead_letter_id)).values(published_at=now())
    )


def mark_not_published(connection: Connection, *, action_id: int, dead_letter_id: int, actor: str, why: str) -> None:
    """The broker did not take the copy: the record is open again (unless an outcome has come in meanwhile)."""
    result = connection.execute(
        update(dead_letter_replays)
        .where(*_replay_key(action_id, dead_letter_id), dead_letter_replays.c.outcome == PENDING)
        .values(outcome=NOT_PUBLISHED, outcome_at=now(), note=why[:2000])
    )
    if result.rowcount != 1:
        return
    connection.execute(
        update(dead_letters)
        .where(dead_letters.c.id == dead_letter_id, dead_letters.c.status == "replayed")
        .values(status="open")
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
    row = connection.execute(select(dead_letter_replays).where(*_replay_key(action_id, dead_letter_id))).mappings()
    found = row.first()
    return None if found is None else dict(found)


def outcome_counts(connection: Connection, action_id: int) -> dict[str, int]:
    """How many of the action's messages ended how, and how many were confirmed published."""
    replay = dead_letter_replays.c
    rows = connection.execute(
        select(replay.outcome, func.count()).where(replay.action_id == action_id).group_by(replay.outcome)
    ).all()
    counts = {outcome: 0 for outcome in (PENDING, APPLIED, DUPLICATE, FAILED_AGAIN, NOT_PUBLISHED)}
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


# -- outcomes, written by the worker side ----------------------------------------------------------


def record_replay_outcome(connection: Connection, mark: ReplayMark, outcome: str) -> bool:
    """A replayed copy was applied or found a duplicate: record it and resolve its record.

    Called by the pipeline inside the dedup claim's transaction, so the outcome commits with the
    effect or not at all. False when the mark names no pending replay (a copy that already has its
    outcome, or a forged header): nothing is changed then.
    """
    result = connection.execute(
        update(dead_letter_replays)
        .where(
            *_replay_key(mark.action_id, mark.dead_letter_id),
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
            *_replay_key(mark.action_id, mark.dead_letter_id),
            dead_letter_replays.c.outcome.in_((PENDING, NOT_PUBLISHED)),
        )
        .values(outcome=FAILED_AGAIN, outcome_at=now(), new_dead_letter_id=new_dead_letter_id)
    )
    if result.rowcount != 1:
        return False
    connection.execute(
        update(dead_letters)
        .where(dead_letters.c.id == mark.dead_letter_id, dead_letters.c.status == "open")
        .values(status="replayed")
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
    allowed: tuple[str, ...] = ("replayed", "open")
    for _ in range(MAX_CHAIN):
        changed = connection.execute(
            update(dead_letters)
            .where(dead_letters.c.id == current, dead_letters.c.status.in_(allowed))
            .values(status="resolved", closed_at=moment)
        )
        if current != dead_letter_id and changed.rowcount == 1:
            audit(
                connection, current, WORKER_ACTOR, "resolved", reason=f"its replay #{dead_letter_id}: {why}", detail={}
            )
        parent = connection.execute(select(dead_letters.c.replay_of).where(dead_letters.c.id == current)).scalar()
        if parent is None:
            return
        current, allowed = int(parent), ("replayed",)


# -- status changes and purge ----------------------------------------------------------------------


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
    closed_at = moment if to_status in ("discarded", "resolved") else None
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
        .where(record.status.in_(("resolved", "discarded")), record.closed_at < before)
        .order_by(record.id)
    )
    return [dict(row) for row in connection.execute(query).mappings()]


def purge(connection: Connection, ids: Sequence[int]) -> int:
    """Delete these records (their audit trail, keys and replay rows go with them); return how many."""
    removed = 0
    for start in range(0, len(ids), 500):
        chunk = list(ids[start : start + 500])
        removed += connection.execute(
            dead_letters.delete().where(
                dead_letters.c.id.in_(chunk), dead_letters.c.status.in_(("resolved", "discarded"))
            )
        ).rowcount
    return removed


def audit(
    connection: Connection, dead_letter_id: int, actor: str, action: str, *, reason: str | None, detail: dict[str, Any]
) -> None:
    """One entry in a record's audit trail."""
    connection.execute(
        dead_letter_events.insert().values(
            dead_letter_id=dead_letter_id, at=now(), actor=actor[:200], action=action, reason=reason, detail=detail
        )
    )


def _replay_key(action_id: int, dead_letter_id: int) -> tuple[Any, Any]:
    return dead_letter_replays.c.action_id == action_id, dead_letter_replays.c.dead_letter_id == dead_letter_id
