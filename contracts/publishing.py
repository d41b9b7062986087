"""How a publisher builds the plain envelope DESIGN.md documents: the one builder the demo, tests and bench share."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any


def new_envelope(
    contract: str,
    data: dict[str, Any],
    *,
    version: int,
    message_id: str | None = None,
    occurred_at: datetime | None = None,
    age: timedelta = timedelta(0),
    producer: str = "storefront",
    correlation_id: str | None = None,
) -> dict[str, Any]:
    """An envelope as a dict: a fresh `message_id` unless one is given, `occurred_at` now less `age` unless given."""
    return {
        "message_id": message_id or str(uuid.uuid4()),
        "contract": contract,
        "version": version,
        "occurred_at": (occurred_at or datetime.now(UTC) - age).isoformat(),
        "producer": producer,
        "correlation_id": correlation_id or f"{producer}-{uuid.uuid4().hex[:8]}",
        "data": data,
    }


def encode(envelope: dict[str, Any]) -> bytes:
    """The body on the wire: UTF-8 JSON, non-ASCII text kept as it is."""
    return json.dumps(envelope, ensure_ascii=False).encode("utf-8")
