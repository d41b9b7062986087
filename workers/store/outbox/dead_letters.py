"""A delivery refused for good becomes a dead letter of stage `delivery` in the archive, with its event's keys."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection

from workers.failures import fingerprint
from workers.store.archive.records import archive
from workers.store.outbox.status import DEAD_LETTERED, PENDING
from workers.store.tables import deliveries

STAGE = "delivery"
#: Path segments that name one entity (`/orders/ORD-17/cancellation`) are generalised for grouping.
_ENTITY_SEGMENT = re.compile(r"[^/]*\d[^/]*")


def delivery_queue(system: str) -> str:
    """What a delivery dead letter shows as its queue: the outbox of its system."""
    return f"outbox.{system}"


def dead_letter_delivery(
    connection: Connection, row: dict[str, Any], owner: str, *, error_type: str, message: str, now: datetime
) -> int | None:
    """Archive the claimed delivery `row` and mark it dead-lettered; None when the lease was lost meanwhile."""
    taken = connection.execute(
        deliveries.update()
        .where(deliveries.c.id == row["id"], deliveries.c.lease_owner == owner, deliveries.c.status == PENDING)
        .values(
            status=DEAD_LETTERED,
            attempts=deliveries.c.attempts + 1,
            last_error=message[:2000],
            finished_at=now,
            lease_owner=None,
            lease_expires_at=None,
        )
    ).rowcount
    if taken != 1:
        return None
    system, path = str(row["system"]), str(row["path"])
    business_keys = dict(row.get("business_keys") or {})
    first_failed = row.get("first_failed_at") or now
    record = {
        "dead_letter_key": f"delivery:{row['id']}:{uuid.uuid4().hex[:12]}",
        "flow": row["flow"],
        "queue": delivery_queue(system),
        "stage": STAGE,
        "contract": row["contract"],
        "version": row["version"],
        "message_id": row["message_id"],
        "dedup_key": row["dedup_key"],
        "business_keys": business_keys,
        "error_type": error_type,
        "error_message": message,
        "traceback": None,
        "field_paths": [],
        "attempts": int(row.get("attempts") or 0) + 1,
        "first_failed_at": first_failed if first_failed.tzinfo else first_failed.replace(tzinfo=UTC),
        "last_failed_at": now,
        "archived_at": now,
        "fingerprint": delivery_fingerprint(row, error_type),
        "status": "open",
        "body": json.dumps(row["body"], ensure_ascii=False, sort_keys=True).encode("utf-8"),
        "headers": {
            "system": system,
            "method": row["method"],
            "path": path,
            "idempotency_key": row["idempotency_key"],
            "delivery_id": row["id"],
            "ordering_key": row["ordering_key"],
            # the dead letter it was replayed from, when an operator had sent it again
            "previous_dead_letter_id": row.get("dead_letter_id"),
        },
        "search_keys": sorted({(str(k), str(v)) for k, v in business_keys.items() if v is not None}),
    }
    dead_letter_id = archive(connection, record)
    connection.execute(deliveries.update().where(deliveries.c.id == row["id"]).values(dead_letter_id=dead_letter_id))
    return dead_letter_id


def delivery_fingerprint(row: dict[str, Any], error_type: str) -> str:
    """Refusals of one kind of request by one system group together, whichever entity they were about."""
    where = f"{row['system']}:{row['method']} {_generalised(str(row['path']))}"
    return fingerprint(STAGE, error_type, where, ())


def _generalised(path: str) -> str:
    return _ENTITY_SEGMENT.sub("*", path)
