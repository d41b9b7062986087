"""Helpers for outbox tests: record deliveries as a handler's port would, and read the rows back."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, select

from workers.store.outbox.recorder import Cause, OutboxRecorder
from workers.store.tables import deliveries

CAUSE = Cause("orders", "order.created", 2, "msg-1", "ORD-1", {"order_id": "ORD-1"})


def record(engine: Engine, system: str, path: str, payload: dict[str, Any], key: str, cause: Cause = CAUSE) -> None:
    """One delivery recorded in its own transaction, as one handled message records it."""
    with engine.begin() as connection:
        OutboxRecorder(connection, system, cause).post(path, payload, idempotency_key=key)


def rows(engine: Engine) -> list[dict[str, Any]]:
    """Every delivery row, oldest first."""
    with engine.connect() as connection:
        return [dict(row) for row in connection.execute(select(deliveries).order_by(deliveries.c.id)).mappings()]


def by_key(engine: Engine) -> dict[str, dict[str, Any]]:
    """Every delivery row by its Idempotency-Key."""
    return {row["idempotency_key"]: row for row in rows(engine)}
