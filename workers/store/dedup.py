"""The dedup claim: one row per (contract, dedup key), inserted in the effect's own transaction."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Connection, select

from workers.store.tables import processed_events
from workers.store.upsert import insert_ignoring_conflict


def claim(connection: Connection, *, flow: str, contract: str, dedup_key: str, message_id: str, version: int) -> bool:
    """Claim the event for this transaction in one round trip; False means it was already applied.

    On PostgreSQL a concurrent claim of the same key waits for this transaction to end, so two
    copies of one event racing in two workers still have one effect.
    """
    values = {
        "contract": contract,
        "dedup_key": dedup_key,
        "flow": flow,
        "message_id": message_id,
        "version": version,
        "processed_at": datetime.now(UTC),
    }
    return insert_ignoring_conflict(connection, processed_events, values, processed_events.c.contract) is not None


def was_applied(connection: Connection, *, contract: str, dedup_key: str) -> bool:
    """Whether an event with this dedup key has been applied (read-only; for dry runs and reports)."""
    query = select(processed_events.c.message_id).where(
        processed_events.c.contract == contract, processed_events.c.dedup_key == dedup_key
    )
    return connection.execute(query).first() is not None
