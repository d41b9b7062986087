"""A dead letter as readable JSON, as one line of an export, and the export's audit row: one for CLI and console."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine

from workers.observability.masking import mask
from workers.store.archive.actions import EXPORT, FINISHED, create_action
from workers.store.archive.records import DeadLetterFilter, get_dead_letter

#: How many records one step of a streamed export reads (one short connection each).
BATCH = 200


def envelope_or_text(body: bytes) -> dict[str, Any]:
    try:
        return {"envelope": json.loads(body)}
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {"body": body.decode("utf-8", errors="replace")}


def readable(record: dict[str, Any]) -> dict[str, Any]:
    """A record as JSON can carry it: the body as an envelope (or text), a repair's edited body likewise."""
    record = dict(record)
    record.update(envelope_or_text(bytes(record.pop("body"))))
    replays = []
    for replayed in record.get("replays", []):
        row = dict(replayed)
        edited = row.pop("body", None)
        if edited is not None:
            row["edited"] = envelope_or_text(bytes(edited))
        replays.append(row)
    record["replays"] = replays
    return record


def jsonable(value: Any) -> Any:
    """What JSON cannot carry as it is: datetimes as ISO 8601, bytes as text, anything else as its str."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def export_line(record: dict[str, Any], *, unmask: bool) -> str:
    """One record of an export: readable, masked unless the export is unmasked, on one line."""
    shown = readable(record)
    return json.dumps(shown if unmask else mask(shown), default=jsonable, ensure_ascii=False)


def streamed_export(engine: Engine, ids: list[int], *, unmask: bool) -> Iterator[str]:
    """The export of these records, a batch of lines per step, each read on its own short connection."""
    for start in range(0, len(ids), BATCH):
        with engine.connect() as connection:
            found = [get_dead_letter(connection, i) for i in ids[start : start + BATCH]]
        yield "".join(export_line(record, unmask=unmask) + "\n" for record in found if record is not None)


def audit_export(
    connection: Connection,
    *,
    actor: str,
    reason: str | None,
    where: DeadLetterFilter,
    unmask: bool,
    output: str,
    count: int,
) -> int:
    """The export as an action in the audit log: who, why, which selection, where to, how many."""
    return create_action(
        connection,
        kind=EXPORT,
        actor=actor,
        reason=reason,
        selection=where.to_json(),
        options={"unmask": unmask, "output": output},
        status=FINISHED,
        counts={"exported": count},
    )
