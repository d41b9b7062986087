"""`dlq replay`, `repair`, `discard` and `restore` for dead letters of stage `delivery`: the outbox, not the broker.

Such a dead letter stands for a request the relay could not deliver; its event was applied. Replaying it
puts the delivery back in the outbox with the same Idempotency-Key (the relay sends it in its key's
order), repairing it does so with a JSON-Patched request body, discarding it means it is never sent.
Each is one audited action, like every other operator write on the archive.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection

from workers.deadletters.repair import PatchError, apply_patch
from workers.store.archive import actions as ops
from workers.store.archive.moves import change_status
from workers.store.archive.records import DeadLetterFilter, matching_ids
from workers.store.archive.status import OPEN, REPLAYED
from workers.store.outbox.dead_letters import STAGE

__all__ = [
    "STAGE",
    "Redelivered",
    "delivery_dead_letters",
    "hold_restored",
    "preview",
    "repair_delivery",
    "replay_deliveries",
    "suppress_discarded",
]
from workers.store.outbox.redelivery import delivery_of, redeliver, suppress, unsuppress


@dataclass
class Redelivered:
    """What a replay or repair of delivery dead letters did."""

    action_id: int | None = None
    sent_again: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)


def delivery_dead_letters(connection: Connection, where: DeadLetterFilter) -> list[int]:
    """The open dead letters of stage `delivery` a selection matches, oldest first."""
    if where.stage not in (None, STAGE):
        return []
    return matching_ids(connection, DeadLetterFilter(**{**where.__dict__, "stage": STAGE}))


def preview(connection: Connection, ids: list[int]) -> list[dict[str, Any]]:
    """What a replay would send again, per dead letter: system, path, key (a dry run)."""
    found = []
    for dead_letter_id in ids:
        delivery = delivery_of(connection, dead_letter_id)
        if delivery is not None:
            found.append(
                {
                    "dead_letter_id": dead_letter_id,
                    "system": delivery["system"],
                    "path": delivery["path"],
                    "idempotency_key": delivery["idempotency_key"],
                    "status": delivery["status"],
                }
            )
    return found


def replay_deliveries(
    connection: Connection, ids: list[int], *, actor: str, reason: str, selection: dict[str, Any]
) -> Redelivered:
    """Send these delivery dead letters again with their own keys: one audited replay action."""
    done = Redelivered()
    if not ids:
        return done
    done.action_id = ops.create_action(
        connection, kind=ops.REPLAY, actor=actor, reason=reason, selection=selection, status=ops.FINISHED
    )
    moment = datetime.now(UTC)
    for dead_letter_id in ids:
        if redeliver(connection, dead_letter_id, now=moment) and _replayed(
            connection, dead_letter_id, actor=actor, reason=reason, action_id=done.action_id, event="replayed"
        ):
            done.sent_again.append(dead_letter_id)
        else:
            done.skipped.append(dead_letter_id)
    ops.update_counts(connection, done.action_id, selected=len(ids), redelivered=len(done.sent_again))
    return done


def repair_delivery(
    connection: Connection, dead_letter_id: int, patch: Any, *, actor: str, reason: str, dry_run: bool = False
) -> dict[str, Any]:
    """JSON-Patch the request body of one delivery dead letter and send it again (same key); returns the body.

    Raises ValueError when the patch does not apply or leaves no JSON object to send.
    """
    delivery = delivery_of(connection, dead_letter_id)
    if delivery is None or delivery["status"] != "dead_lettered":
        raise ValueError(f"dead letter #{dead_letter_id} has no undelivered request to repair")
    try:
        body = apply_patch(delivery["body"], patch)
    except PatchError as error:
        raise ValueError(f"the patch does not apply to the request body: {error}") from None
    if not isinstance(body, dict):
        raise ValueError("the patched request body must stay a JSON object")
    if dry_run:
        return body
    action_id = ops.create_action(
        connection,
        kind=ops.REPAIR,
        actor=actor,
        reason=reason,
        selection={"ids": [dead_letter_id]},
        options={"patch": patch},
        status=ops.FINISHED,
    )
    if not redeliver(connection, dead_letter_id, now=datetime.now(UTC), body=body):
        raise ValueError(f"dead letter #{dead_letter_id} was replayed meanwhile")
    _replayed(connection, dead_letter_id, actor=actor, reason=reason, action_id=action_id, event="repaired")
    ops.update_counts(connection, action_id, selected=1, redelivered=1)
    return body


def suppress_discarded(connection: Connection, ids: list[int]) -> int:
    """Discarded dead letters' deliveries are never sent; their keys flow again. Returns how many."""
    moment = datetime.now(UTC)
    return sum(suppress(connection, dead_letter_id, now=moment) for dead_letter_id in ids)


def hold_restored(connection: Connection, ids: list[int]) -> int:
    """Restored dead letters' deliveries hold back their keys again, waiting for a replay or discard."""
    return sum(unsuppress(connection, dead_letter_id) for dead_letter_id in ids)


def _replayed(
    connection: Connection, dead_letter_id: int, *, actor: str, reason: str, action_id: int, event: str
) -> bool:
    moved = change_status(
        connection,
        [dead_letter_id],
        from_status=OPEN,
        to_status=REPLAYED,
        actor=actor,
        reason=reason,
        action_id=action_id,
        event=event,
    )
    return bool(moved)
