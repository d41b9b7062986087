"""What an operator's `dlq` commands do to a delivery dead letter: send it again (maybe patched), or never.

Replay and repair put the delivery back to pending, with the same Idempotency-Key, a fresh budget and,
for a repair, the patched request body; the relay sends it in its key's order. When it is delivered its
dead letter is resolved; if it is refused again it becomes a new dead letter. Discard suppresses it for
good (its key flows again); restore puts it back in the archive's hands, dead-lettered.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, update

from workers.store.archive.audit import audit
from workers.store.outbox.status import DEAD_LETTERED, DISCARDED, PENDING
from workers.store.tables import dead_letters, deliveries

#: Who the audit trail names for what the relay did.
RELAY_ACTOR = "flowfleet-relay"


def delivery_of(connection: Connection, dead_letter_id: int) -> dict[str, Any] | None:
    """The delivery a dead letter of stage `delivery` stands for (None for any other dead letter)."""
    row = connection.execute(select(deliveries).where(deliveries.c.dead_letter_id == dead_letter_id)).mappings().first()
    return dict(row) if row is not None else None


def redeliver(
    connection: Connection, dead_letter_id: int, *, now: datetime, body: dict[str, Any] | None = None
) -> bool:
    """Send the dead-lettered delivery again (with `body` instead of its own, for a repair); False if it is
    not dead-lettered any more (another operator was first)."""
    values: dict[str, Any] = {
        "status": PENDING,
        "attempts": 0,
        "throttles": 0,
        "first_failed_at": None,
        "last_error": None,
        "next_attempt_at": now,
        "finished_at": None,
        "lease_owner": None,
        "lease_expires_at": None,
    }
    if body is not None:
        values["body"] = body
    result = connection.execute(
        update(deliveries)
        .where(deliveries.c.dead_letter_id == dead_letter_id, deliveries.c.status == DEAD_LETTERED)
        .values(**values)
    )
    return result.rowcount == 1


def suppress(connection: Connection, dead_letter_id: int, *, now: datetime) -> bool:
    """Never send it (its dead letter was discarded): the later deliveries of its key go out."""
    result = connection.execute(
        update(deliveries)
        .where(deliveries.c.dead_letter_id == dead_letter_id, deliveries.c.status == DEAD_LETTERED)
        .values(status=DISCARDED, finished_at=now)
    )
    return result.rowcount == 1


def unsuppress(connection: Connection, dead_letter_id: int) -> bool:
    """Its discard was undone: dead-lettered again, holding back its key until replayed or discarded."""
    result = connection.execute(
        update(deliveries)
        .where(deliveries.c.dead_letter_id == dead_letter_id, deliveries.c.status == DISCARDED)
        .values(status=DEAD_LETTERED, finished_at=None)
    )
    return result.rowcount == 1


def resolve_after_delivery(connection: Connection, dead_letter_id: int | None, *, now: datetime) -> bool:
    """A replayed delivery reached its system: its dead letter is resolved."""
    if dead_letter_id is None:
        return False
    result = connection.execute(
        update(dead_letters)
        .where(dead_letters.c.id == dead_letter_id, dead_letters.c.status.in_(("replayed", "open")))
        .values(status="resolved", closed_at=now)
    )
    if result.rowcount != 1:
        return False
    audit(connection, dead_letter_id, RELAY_ACTOR, "resolved", reason="delivered after its replay", detail={})
    return True
