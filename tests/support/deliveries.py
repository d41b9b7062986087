"""Rows of the outbox as the relay would leave them, written straight into `deliveries` for the operators' tests."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, update

from contracts.published import REGISTRY
from workers.store.outbox.status import PENDING
from workers.store.tables import deliveries, downstream_controls

_numbers = itertools.count(1)


def record_delivery(
    engine: Engine,
    *,
    now: datetime,
    age: timedelta = timedelta(0),
    system: str = "erp",
    status: str = PENDING,
    contract: str = "order.created",
    business_keys: dict[str, Any] | None = None,
    **columns: Any,
) -> int:
    """One delivery recorded `age` before `now`, with the event that caused it; returns its id."""
    number = next(_numbers)
    keys = business_keys if business_keys is not None else {"order_id": f"ORD-{number}"}
    first_key = next(iter(keys.values()), f"K-{number}")
    values: dict[str, Any] = {
        "system": system,
        "method": "POST",
        "path": "/orders",
        "body": {"order_id": first_key},
        "idempotency_key": f"orders:{contract}:{first_key}:{number}",
        "ordering_key": f"{system}:{first_key}",
        "flow": REGISTRY.get(contract).flow,
        "contract": contract,
        "version": 1,
        "message_id": f"m-{number}",
        "dedup_key": str(first_key),
        "business_keys": keys,
        "status": status,
        "created_at": now - age,
        "next_attempt_at": now - age,
        "attempts": 0,
        "throttles": 0,
    }
    values.update(columns)
    with engine.begin() as connection:
        return int(connection.execute(deliveries.insert().values(**values).returning(deliveries.c.id)).scalar_one())


def open_breaker(engine: Engine, system: str, *, opened_at: datetime, failures: int = 5) -> None:
    """What the relay writes when it stops claiming for a flapping system."""
    with engine.begin() as connection:
        connection.execute(
            update(downstream_controls)
            .where(downstream_controls.c.system == system)
            .values(breaker="open", consecutive_failures=failures, breaker_opened_at=opened_at)
        )
