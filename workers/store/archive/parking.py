"""Events parked behind a dead letter they depend on, so one failure does not burn the retries of what follows.

A contract declares what it depends on (`Contract.depends_on`: an earlier contract and the business key
they share). While such an earlier event is an open dead letter, a later one (a capture of that order) is
parked against it instead of retried; it is released, in the order it arrived, once that record is applied
(replayed, repaired or superseded by a resend), and dead-lettered naming its parent if it waits too long.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, RowMapping, bindparam, func, select, update

from workers.store.archive import status
from workers.store.archive.audit import now
from workers.store.tables import dead_letter_keys, dead_letters, parked_events

#: The stage of a dead letter whose event was applied (a downstream refusal): nothing waits behind it.
DELIVERY = "delivery"
# Where a parked event stands.
PARKED, RELEASED, EXPIRED = "parked", "released", "expired"


@dataclass(frozen=True)
class Parent:
    """The open dead letter an event waits behind."""

    id: int
    contract: str
    key: str
    value: str


@dataclass(frozen=True)
class ParkedEvent:
    id: int
    parent_id: int
    flow: str
    contract: str
    message_id: str
    dedup_key: str
    business_keys: dict[str, str]
    body: bytes
    headers: dict[str, Any]
    parked_at: datetime


#: Built once, bound per event (every applied event of a contract that depends on another asks).
_OPEN_PARENT = (
    select(dead_letters.c.id)
    .join(dead_letter_keys, dead_letter_keys.c.dead_letter_id == dead_letters.c.id)
    .where(
        dead_letter_keys.c.name == bindparam("key"),
        dead_letter_keys.c.value == bindparam("value"),
        dead_letters.c.contract == bindparam("contract"),
        dead_letters.c.status == status.OPEN,
        dead_letters.c.stage != DELIVERY,  # that event was applied: only its request was refused
    )
    .order_by(dead_letters.c.id)
    .limit(1)
)
#: Every applied event asks first whether anything is parked at all.
_ANYTHING_PARKED = select(parked_events.c.id).where(parked_events.c.status == PARKED).limit(1)


def open_parent(
    connection: Connection, depends_on: Mapping[str, str], business_keys: Mapping[str, str]
) -> Parent | None:
    """The oldest open dead letter of a contract this event depends on, for the business key they share."""
    for contract, key in depends_on.items():
        value = business_keys.get(key)
        if value is None:
            continue
        found = connection.execute(_OPEN_PARENT, {"key": key, "value": value, "contract": contract}).scalar()
        if found is not None:
            return Parent(int(found), contract, key, value)
    return None


def park(
    connection: Connection,
    parent: Parent,
    *,
    flow: str,
    contract: str,
    message_id: str,
    dedup_key: str,
    business_keys: Mapping[str, str],
    body: bytes,
    headers: Mapping[str, Any],
) -> int:
    result = connection.execute(
        parked_events.insert()
        .returning(parked_events.c.id)
        .values(
            parent_id=parent.id,
            flow=flow,
            contract=contract,
            message_id=message_id,
            dedup_key=dedup_key,
            business_keys=dict(business_keys),
            body=body,
            headers=dict(headers),
            parked_at=now(),
            status=PARKED,
        )
    )
    return int(result.scalar_one())


def releasable(connection: Connection, *, contract: str, dedup_key: str) -> list[ParkedEvent]:
    """What waits behind records of `contract` with `dedup_key` that are no longer open, oldest first.

    Every applied event asks, so the common answer (nothing is parked at all) is one indexed lookup.
    """
    if connection.execute(_ANYTHING_PARKED).first() is None:
        return []
    parents = select(dead_letters.c.id).where(
        dead_letters.c.contract == contract,
        dead_letters.c.dedup_key == dedup_key,
        dead_letters.c.status != status.OPEN,
    )
    rows = connection.execute(
        select(parked_events)
        .where(parked_events.c.status == PARKED, parked_events.c.parent_id.in_(parents))
        .order_by(parked_events.c.id)
    ).mappings()
    return [_parked(row) for row in rows]


def overdue(connection: Connection, *, parked_before: datetime) -> list[ParkedEvent]:
    rows = connection.execute(
        select(parked_events)
        .where(parked_events.c.status == PARKED, parked_events.c.parked_at < parked_before)
        .order_by(parked_events.c.id)
    ).mappings()
    return [_parked(row) for row in rows]


def close(connection: Connection, ids: Sequence[int], outcome: str) -> int:
    """Mark parked events released or expired; returns how many were still parked."""
    if not ids:
        return 0
    result = connection.execute(
        update(parked_events)
        .where(parked_events.c.id.in_(list(ids)), parked_events.c.status == PARKED)
        .values(status=outcome, closed_at=now())
    )
    return int(result.rowcount)


def parked_list(connection: Connection, *, parent_id: int | None = None, limit: int = 1000) -> list[dict[str, Any]]:
    """Parked events (of one parent, or all), oldest first, without their bodies."""
    query = select(
        parked_events.c.id,
        parked_events.c.parent_id,
        parked_events.c.flow,
        parked_events.c.contract,
        parked_events.c.message_id,
        parked_events.c.dedup_key,
        parked_events.c.business_keys,
        parked_events.c.parked_at,
    ).where(parked_events.c.status == PARKED)
    if parent_id is not None:
        query = query.where(parked_events.c.parent_id == parent_id)
    return [dict(row) for row in connection.execute(query.order_by(parked_events.c.id).limit(limit)).mappings()]


def parked_counts(connection: Connection) -> dict[str, int]:
    """How many events are parked, per flow (the `flowfleet_parked_events` gauge)."""
    rows = connection.execute(
        select(parked_events.c.flow, func.count())
        .where(parked_events.c.status == PARKED)
        .group_by(parked_events.c.flow)
    )
    return {str(flow): int(count) for flow, count in rows}


def _parked(row: RowMapping) -> ParkedEvent:
    return ParkedEvent(
        id=int(row["id"]),
        parent_id=int(row["parent_id"]),
        flow=str(row["flow"]),
        contract=str(row["contract"]),
        message_id=str(row["message_id"]),
        dedup_key=str(row["dedup_key"]),
        business_keys={str(k): str(v) for k, v in (row["business_keys"] or {}).items()},
        body=bytes(row["body"]),
        headers=dict(row["headers"] or {}),
        parked_at=row["parked_at"],
    )
