"""Parked events that waited too long for their parent: each becomes a dead letter that names that parent.

A parked event is released when the dead letter it waits behind is applied; if on-call decides otherwise
(the order is discarded, or nobody acts), the event must not wait forever unseen: past the limit it is
archived as a `handler` dead letter of its own, with the parent's number in its reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

from sqlalchemy import Engine

from workers.failures import fingerprint
from workers.store.archive.audit import now
from workers.store.archive.parking import EXPIRED, ParkedEvent, close, overdue
from workers.store.archive.records import archive

#: The error type of a parked event that waited too long (one failure group for all of them).
PARKED_TOO_LONG = "ParkedTooLong"


def dead_letter_overdue(engine: Engine, *, limit: timedelta, queues: Mapping[str, str]) -> list[int]:
    """Archive every event parked longer than `limit` as a dead letter; return the new records' ids.

    `queues` names each flow's queue (the record's `queue`).
    """
    moment = now()
    created: list[int] = []
    with engine.begin() as connection:
        for event in overdue(connection, parked_before=moment - limit):
            new_id = archive(connection, _record(event, limit, queues.get(event.flow, event.flow)))
            close(connection, [event.id], EXPIRED)
            if new_id is not None:
                created.append(new_id)
    return created


def _record(event: ParkedEvent, limit: timedelta, queue: str) -> dict[str, object]:
    hours = limit.total_seconds() / 3600
    message = (
        f"parked behind dead letter #{event.parent_id} for more than {hours:g} h: it depends on that record, "
        f"which was not applied (replay, repair or have it resent; then replay this one)"
    )
    moment = now()
    return {
        "dead_letter_key": f"parked:{event.id}",
        "flow": event.flow,
        "queue": queue,
        "stage": "handler",
        "contract": event.contract,
        "message_id": event.message_id,
        "dedup_key": event.dedup_key,
        "business_keys": event.business_keys,
        "error_type": PARKED_TOO_LONG,
        "error_message": message,
        "traceback": None,
        "field_paths": [],
        "attempts": 0,
        "first_failed_at": event.parked_at,
        "last_failed_at": moment,
        "archived_at": moment,
        "fingerprint": fingerprint("handler", PARKED_TOO_LONG, "", ()),
        "status": "open",
        "body": event.body,
        "headers": event.headers,
        "search_keys": sorted(event.business_keys.items()),
    }
