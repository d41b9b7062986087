"""Open dead letters that a later event with their dedup key made moot: resolved as `superseded`, by the system.

A producer that resends a failed event fixed (the corrected order after a bad release) gets it applied
under the same dedup key; the dead letter of the broken copy then has nothing left to do. The pipeline
closes it in the transaction of the dedup claim, so the record is closed exactly when the effect commits.
"""

from __future__ import annotations

from sqlalchemy import Connection, bindparam, select, update

from workers.store.archive import status
from workers.store.archive.audit import WORKER_ACTOR, audit, now
from workers.store.tables import dead_letters

#: The outcome a superseded record's audit entry names (`dlq show`, `dlq actions`).
SUPERSEDED = "superseded"


#: Built once, bound per message: every applied event asks.
_OPEN_OF_KEY = select(dead_letters.c.id).where(
    dead_letters.c.status == status.OPEN,
    dead_letters.c.flow == bindparam("flow"),
    dead_letters.c.contract == bindparam("contract"),
    dead_letters.c.dedup_key == bindparam("dedup_key"),
    dead_letters.c.message_id != bindparam("message_id"),
)


def close_superseded(connection: Connection, *, flow: str, contract: str, dedup_key: str, message_id: str) -> list[int]:
    """Resolve the open dead letters of `contract` with `dedup_key` that another message (`message_id`) has
    just been applied for; return their ids. A record's own replayed copy is not another message."""
    ids = [
        int(row_id)
        for row_id in connection.execute(
            _OPEN_OF_KEY, {"flow": flow, "contract": contract, "dedup_key": dedup_key, "message_id": message_id}
        ).scalars()
    ]
    if not ids:
        return []
    connection.execute(
        update(dead_letters)
        .where(dead_letters.c.id.in_(ids), dead_letters.c.status == status.OPEN)
        .values(status=status.RESOLVED, closed_at=now())
    )
    for dead_letter_id in ids:
        audit(
            connection,
            dead_letter_id,
            WORKER_ACTOR,
            SUPERSEDED,
            reason=f"message {message_id} with the same dedup key ({dedup_key}) was applied",
            detail={"outcome": SUPERSEDED, "superseded_by": {"message_id": message_id, "dedup_key": dedup_key}},
        )
    return ids
