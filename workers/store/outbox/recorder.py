"""The handlers' Downstream port inside the runtime: a request becomes a delivery row in the effect's transaction."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, bindparam

from handlers.errors import PermanentError
from workers.store.outbox.keys import ordering_key, supersede_key
from workers.store.outbox.status import PENDING, SUPERSEDED
from workers.store.tables import deliveries

#: Built once, bound per request (no statement construct and cache key per delivery).
#: A newer latest-value request replaces the pending ones of its key that no live lease holds.
_SUPERSEDE = (
    deliveries.update()
    .where(
        deliveries.c.supersede_key == bindparam("replaces"),
        deliveries.c.status == PENDING,
        deliveries.c.lease_owner.is_(None) | (deliveries.c.lease_expires_at < bindparam("now")),
    )
    .values(status=SUPERSEDED, finished_at=bindparam("now"))
)
_RECORD = deliveries.insert()


@dataclass(frozen=True)
class Cause:
    """The event a delivery comes from: found by it, shown with it, dead-lettered under it."""

    flow: str
    contract: str
    version: int
    message_id: str
    dedup_key: str
    business_keys: Mapping[str, str] = field(default_factory=dict)


class OutboxRecorder:
    """Records each `post` as a pending delivery to `system`; nothing is sent until the relay takes it."""

    def __init__(self, connection: Connection, system: str, cause: Cause) -> None:
        self.connection = connection
        self.system = system
        self.cause = cause
        self.recorded = 0

    def post(self, path: str, payload: Mapping[str, Any], *, idempotency_key: str) -> None:
        body = _json_body(self.system, path, payload)
        now = datetime.now(UTC)
        replaces = supersede_key(self.system, path, body)
        if replaces is not None:
            self.connection.execute(_SUPERSEDE, {"replaces": replaces, "now": now})
        cause = self.cause
        self.connection.execute(
            _RECORD,
            {
                "system": self.system,
                "method": "POST",
                "path": path,
                "body": body,
                "idempotency_key": idempotency_key,
                "ordering_key": ordering_key(self.system, path, body),
                "supersede_key": replaces,
                "flow": cause.flow,
                "contract": cause.contract,
                "version": cause.version,
                "message_id": cause.message_id,
                "dedup_key": cause.dedup_key,
                "business_keys": dict(cause.business_keys),
                "status": PENDING,
                "created_at": now,
                "next_attempt_at": now,
                "attempts": 0,
                "throttles": 0,
            },
        )
        self.recorded += 1


def _json_body(system: str, path: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    """The payload as it will be sent: a value JSON cannot carry is refused now, with the effect."""
    try:
        body: dict[str, Any] = json.loads(json.dumps(dict(payload), allow_nan=False))
    except (TypeError, ValueError) as error:
        raise PermanentError(f"{system} POST {path}: the request cannot be sent as JSON: {error}") from None
    return body
