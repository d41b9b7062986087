"""The dead-letter archive: insert drained dead letters once, find them by filter, group and key, read them whole.

A replayed copy that failed again arrives with its replay mark: it is stored as a new record linked
to the one replayed (`replay_of`), and its outcome is recorded against the replay, in the same
transaction as the insert. A mark naming a record or action that does not exist is kept in the
headers but not linked: the drain must never fail on a header.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, func, select

from workers.messaging.replay_headers import ReplayMark
from workers.store.archive.outcomes import link_refailure
from workers.store.archive.replays import replays_of
from workers.store.archive.status import OPEN
from workers.store.fit import fit_row, fit_text
from workers.store.tables import dead_letter_actions, dead_letter_events, dead_letter_keys, dead_letters
from workers.store.upsert import insert_ignoring_conflict

SYSTEM_ACTOR = "flowfleet-drain"
#: Columns a listing leaves out: large, or personal.
_HEAVY = ("body", "headers", "traceback")


@dataclass(frozen=True)
class DeadLetterFilter:
    """Which dead letters to read; every field narrows, None (or empty) means any."""

    flow: str | None = None
    stage: str | None = None
    status: str | None = OPEN
    contract: str | None = None
    message_id: str | None = None
    version: int | None = None
    error_type: str | None = None
    fingerprint: str | None = None
    #: Last failed at or after `since`, and before `until`.
    since: datetime | None = None
    until: datetime | None = None
    #: Business keys (name, value) the record must all have: `--key order_id=ORD-1234`.
    keys: tuple[tuple[str, str], ...] = ()
    ids: tuple[int, ...] = ()
    #: Archived at or before this moment (a replay's cutoff), or after this one.
    archived_until: datetime | None = None
    archived_after: datetime | None = None
    #: Leave out the re-failures of this action (what "arrived new" means to a replay).
    not_from_action: int | None = None

    def to_json(self) -> dict[str, Any]:
        """The filter as JSON, for the action that froze it (None and empty fields left out)."""
        values = {k: v for k, v in asdict(self).items() if v not in (None, ())}
        for name in ("since", "until", "archived_until", "archived_after"):
            if name in values:
                values[name] = values[name].isoformat()
        if "keys" in values:
            values["keys"] = [list(pair) for pair in values["keys"]]
        if "ids" in values:
            values["ids"] = list(values["ids"])
        values.setdefault("status", None)
        return values

    @classmethod
    def from_json(cls, values: dict[str, Any]) -> DeadLetterFilter:
        given = dict(values)
        for name in ("since", "until", "archived_until", "archived_after"):
            if given.get(name) is not None:
                given[name] = datetime.fromisoformat(given[name])
        given["keys"] = tuple((str(k), str(v)) for k, v in given.get("keys", ()))
        given["ids"] = tuple(int(i) for i in given.get("ids", ()))
        return cls(**given)

    @property
    def narrows(self) -> bool:
        """Whether it selects anything less than every record of its status."""
        return any(
            value not in (None, ())
            for name, value in asdict(self).items()
            if name not in ("status", "archived_until", "not_from_action")
        )


def conditions(where: DeadLetterFilter) -> list[ColumnElement[bool]]:
    """The filter as SQL conditions on `dead_letters`."""
    record = dead_letters.c
    found: list[ColumnElement[bool]] = [
        column == value
        for column, value in (
            (record.flow, where.flow),
            (record.stage, where.stage),
            (record.status, where.status),
            (record.contract, where.contract),
            (record.message_id, where.message_id),
            (record.version, where.version),
            (record.error_type, where.error_type),
            (record.fingerprint, where.fingerprint),
        )
        if value is not None
    ]
    if where.since is not None:
        found.append(record.last_failed_at >= where.since)
    if where.until is not None:
        found.append(record.last_failed_at < where.until)
    if where.archived_until is not None:
        found.append(record.archived_at <= where.archived_until)
    if where.archived_after is not None:
        found.append(record.archived_at > where.archived_after)
    if where.ids:
        found.append(record.id.in_(where.ids))
    if where.not_from_action is not None:
        found.append((record.replay_action_id.is_(None)) | (record.replay_action_id != where.not_from_action))
    for name, value in where.keys:
        keyed = select(dead_letter_keys.c.dead_letter_id).where(
            dead_letter_keys.c.name == name, dead_letter_keys.c.value == value
        )
        found.append(record.id.in_(keyed))
    return found


def archive(connection: Connection, record: dict[str, Any]) -> int | None:
    """Keep one dead letter; a second copy of the same dead letter (a redelivery) is ignored.

    Returns the new record's id, or None when it was already archived.
    """
    values = fit_row(dead_letters, {name: value for name, value in record.items() if name in dead_letters.c})
    mark = _verified_mark(connection, values)
    new_id = insert_ignoring_conflict(connection, dead_letters, values, dead_letters.c.id)
    if new_id is None:
        return None
    new_id = int(new_id)
    detail: dict[str, Any] = {"queue": values["queue"], "attempts": values["attempts"]}
    if mark is not None:
        detail |= {"replay_of": mark.dead_letter_id, "replay_action_id": mark.action_id}
    connection.execute(
        dead_letter_events.insert().values(
            dead_letter_id=new_id,
            at=datetime.now(UTC),
            actor=SYSTEM_ACTOR,
            action="archived",
            reason=f"{values['stage']}: {values['error_type']}",
            detail=detail,
        )
    )
    found = record.get("search_keys", ())
    keys = sorted({(fit_text(str(name), 100), fit_text(str(value), 200)) for name, value in found})
    if keys:
        connection.execute(
            dead_letter_keys.insert(), [{"dead_letter_id": new_id, "name": n, "value": v} for n, v in keys]
        )
    if mark is not None:
        link_refailure(connection, mark, new_id, SYSTEM_ACTOR)
    return new_id


def _verified_mark(connection: Connection, values: dict[str, Any]) -> ReplayMark | None:
    """The record's replay link if both the record and the action it names exist; else no link."""
    of, action = values.get("replay_of"), values.get("replay_action_id")
    mark = None
    if isinstance(of, int) and isinstance(action, int):
        original = connection.execute(select(dead_letters.c.id).where(dead_letters.c.id == of)).first()
        known = connection.execute(select(dead_letter_actions.c.id).where(dead_letter_actions.c.id == action)).first()
        mark = ReplayMark(of, action) if original is not None and known is not None else None
    values["replay_of"] = None if mark is None else mark.dead_letter_id
    values["replay_action_id"] = None if mark is None else mark.action_id
    return mark


def list_dead_letters(
    connection: Connection, where: DeadLetterFilter, *, limit: int = 50, offset: int = 0
) -> tuple[list[dict[str, Any]], int]:
    """One page of matching dead letters, newest first, and the total that match."""
    found = conditions(where)
    summary_columns = [c for c in dead_letters.c if c.name not in _HEAVY]
    rows = connection.execute(
        select(*summary_columns).where(*found).order_by(dead_letters.c.id.desc()).limit(limit).offset(offset)
    ).mappings()
    total = connection.execute(select(func.count()).select_from(dead_letters).where(*found)).scalar_one()
    return [dict(row) for row in rows], int(total)


def count_dead_letters(connection: Connection, where: DeadLetterFilter) -> int:
    query = select(func.count()).select_from(dead_letters).where(*conditions(where))
    return int(connection.execute(query).scalar_one())


def matching_ids(connection: Connection, where: DeadLetterFilter) -> list[int]:
    """Every matching record's id, oldest first: the order a replay sends them in."""
    query = select(dead_letters.c.id).where(*conditions(where)).order_by(dead_letters.c.id)
    return [int(i) for i in connection.execute(query).scalars()]


def iter_dead_letters(connection: Connection, where: DeadLetterFilter, *, batch: int = 200) -> Any:
    """Every matching record whole (as `get_dead_letter` reads it), oldest first, a batch at a time."""
    ids = matching_ids(connection, where)
    for start in range(0, len(ids), batch):
        for dead_letter_id in ids[start : start + batch]:
            record = get_dead_letter(connection, dead_letter_id)
            if record is not None:
                yield record


def dead_letter_groups(connection: Connection, where: DeadLetterFilter) -> list[dict[str, Any]]:
    """Matching dead letters grouped by failure fingerprint, biggest group first.

    Each group has its count, first and last failure, the flows it touches, its stage and error type,
    and the newest record's reason and field paths as a sample.
    """
    record = dead_letters.c
    found = conditions(where)
    grouped = connection.execute(
        select(
            record.fingerprint,
            func.count().label("count"),
            func.min(record.first_failed_at).label("first_seen"),
            func.max(record.last_failed_at).label("last_seen"),
            func.max(record.id).label("sample_id"),
        )
        .where(*found)
        .group_by(record.fingerprint)
        .order_by(func.count().desc(), record.fingerprint)
    ).mappings()
    groups = [dict(row) for row in grouped]
    if not groups:
        return []
    flows: dict[str, list[str]] = {}
    for fingerprint, flow in connection.execute(
        select(record.fingerprint, record.flow).where(*found).distinct().order_by(record.flow)
    ).all():
        flows.setdefault(str(fingerprint), []).append(str(flow))
    samples = {
        int(row["id"]): dict(row)
        for row in connection.execute(
            select(
                record.id, record.stage, record.error_type, record.error_message, record.field_paths, record.contract
            ).where(record.id.in_([int(g["sample_id"]) for g in groups]))
        ).mappings()
    }
    for group in groups:
        sample = samples[int(group["sample_id"])]
        group["flows"] = flows.get(str(group["fingerprint"]), [])
        group["stage"] = sample["stage"]
        group["error_type"] = sample["error_type"]
        group["sample_reason"] = sample["error_message"]
        group["field_paths"] = sample["field_paths"]
        group["contract"] = sample["contract"]
    return groups


def get_dead_letter(connection: Connection, dead_letter_id: int) -> dict[str, Any] | None:
    """One dead letter with everything kept about it: its audit trail under `history`, its replays
    with their outcomes under `replays`, its business keys, and the records replayed from it."""
    row = connection.execute(select(dead_letters).where(dead_letters.c.id == dead_letter_id)).mappings().first()
    if row is None:
        return None
    history = connection.execute(
        select(dead_letter_events)
        .where(dead_letter_events.c.dead_letter_id == dead_letter_id)
        .order_by(dead_letter_events.c.id)
    ).mappings()
    keys = connection.execute(
        select(dead_letter_keys.c.name, dead_letter_keys.c.value)
        .where(dead_letter_keys.c.dead_letter_id == dead_letter_id)
        .order_by(dead_letter_keys.c.name, dead_letter_keys.c.value)
    ).all()
    copies = connection.execute(
        select(dead_letters.c.id).where(dead_letters.c.replay_of == dead_letter_id).order_by(dead_letters.c.id)
    ).scalars()
    return dict(row) | {
        "history": [dict(event) for event in history],
        "replays": replays_of(connection, dead_letter_id),
        "keys": [{"name": name, "value": value} for name, value in keys],
        "replayed_as": [int(i) for i in copies],
    }


def is_linked_copy(connection: Connection, dead_letter_id: int) -> bool:
    """Whether the record is a replayed copy that failed again, linked to the record it was replayed from."""
    query = select(dead_letters.c.replay_of).where(dead_letters.c.id == dead_letter_id)
    return connection.execute(query).scalar() is not None
