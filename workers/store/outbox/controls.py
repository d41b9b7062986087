"""An operator's pause and resume of a downstream system, held in `downstream_controls` and audited as actions.

Why it is built this way:
- The pause is one row per system that every relay reads before it claims (part of the relay's own
  loop), so pausing is an UPDATE: every worker sees it on its next claim, and it survives restarts.
- `paused_until` is the operator's *plan*, not a timer: a pause holds until someone resumes it, so an
  ERP upgrade that overruns never gets traffic by surprise. The exporter publishes the plan and an
  alert fires once it has passed (or after 4 h without one).
- Each pause and resume, even one that changed nothing, is a row in `dead_letter_actions` (kind
  `pause` or `resume`), written in the same transaction as the change: who, when, why, which system,
  the planned end, and the outcome in words. It is the archive's one audit log of operator actions.
- Only the pause columns are written here; the breaker's columns belong to the relay.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Select, select, update

from workers.settings import DOWNSTREAM_SYSTEMS
from workers.store.archive.actions import FINISHED, create_action
from workers.store.tables import downstream_controls

PAUSE, RESUME = "pause", "resume"
#: What a pause or resume did, recorded as the action's note and counted under its `outcome`.
PAUSED, UPDATED, RESUMED, NOT_PAUSED = "paused", "updated", "resumed", "not_paused"
#: The breaker's state when the relay has not opened it.
BREAKER_CLOSED = "closed"


class UnknownSystem(ValueError):
    """A name that is not one of the downstream systems flowfleet delivers to."""


def known_system(name: str) -> str:
    """The name, if it is a downstream system (what an operator typed or a form posted)."""
    if name not in DOWNSTREAM_SYSTEMS:
        raise UnknownSystem(f"unknown downstream system {name!r}: one of {', '.join(DOWNSTREAM_SYSTEMS)}")
    return name


@dataclass(frozen=True)
class Control:
    """One system's pause and breaker, as every relay sees them."""

    system: str
    paused: bool
    paused_by: str | None
    pause_reason: str | None
    paused_since: datetime | None
    paused_until: datetime | None
    breaker: str
    consecutive_failures: int
    breaker_opened_at: datetime | None
    #: When a relay took the half-open probe (the relay's own bookkeeping).
    breaker_probe_at: datetime | None = None

    @property
    def circuit_open(self) -> bool:
        """The relay does not claim for this system (open, or probing with a single delivery)."""
        return self.breaker != BREAKER_CLOSED

    @classmethod
    def idle(cls, system: str) -> Control:
        """A system without a row yet: not paused, breaker closed."""
        return cls(system, False, None, None, None, None, BREAKER_CLOSED, 0, None)


@dataclass(frozen=True)
class Change:
    """What a pause or resume did, and the action that records it."""

    system: str
    outcome: str
    action_id: int
    before: Control
    after: Control


def aware(value: datetime | None) -> datetime | None:
    """SQLite hands timestamps back without their zone; they are written in UTC."""
    return value if value is None or value.tzinfo is not None else value.replace(tzinfo=UTC)


def read_controls(connection: Connection) -> dict[str, Control]:
    """Every system's row, by system."""
    return {control.system: control for control in _read(connection, select(downstream_controls))}


def read_control(connection: Connection, system: str, *, lock: bool = False) -> Control:
    """One system's row; with `lock`, held until the transaction ends (PostgreSQL; SQLite serialises writers),
    so two operators pausing at once are told apart: one pauses, the other updates that pause."""
    query = select(downstream_controls).where(downstream_controls.c.system == system)
    found = _read(connection, query.with_for_update() if lock else query)
    return found[0] if found else Control.idle(system)


def _read(connection: Connection, query: Select[Any]) -> list[Control]:
    return [
        Control(
            system=row["system"],
            paused=bool(row["paused"]),
            paused_by=row["paused_by"],
            pause_reason=row["pause_reason"],
            paused_since=aware(row["paused_since"]),
            paused_until=aware(row["paused_until"]),
            breaker=row["breaker"] or BREAKER_CLOSED,
            consecutive_failures=int(row["consecutive_failures"] or 0),
            breaker_opened_at=aware(row["breaker_opened_at"]),
            breaker_probe_at=aware(row["breaker_probe_at"]),
        )
        for row in connection.execute(query).mappings()
    ]


def pause(
    connection: Connection, system: str, *, actor: str, reason: str, until: datetime | None, now: datetime
) -> Change:
    """Pause `system` (or, already paused, take over its reason and plan, keeping since when), audited."""
    ensure_row(connection, system)
    before = read_control(connection, system, lock=True)
    outcome = UPDATED if before.paused else PAUSED
    since = before.paused_since if before.paused and before.paused_since else now
    connection.execute(
        update(downstream_controls)
        .where(downstream_controls.c.system == system)
        .values(
            paused=True,
            paused_by=actor[:200],
            pause_reason=reason,
            paused_since=since,
            paused_until=until,
            updated_at=now,
        )
    )
    after = read_control(connection, system)
    note = f"{system} paused" if outcome == PAUSED else f"{system} was paused already: reason and plan updated"
    action_id = _audit(connection, PAUSE, system, actor=actor, reason=reason, before=before, outcome=outcome, note=note)
    return Change(system, outcome, action_id, before, after)


def resume(connection: Connection, system: str, *, actor: str, reason: str, now: datetime) -> Change:
    """Let the relays claim for `system` again, audited (also when it was not paused: the try is recorded)."""
    before = read_control(connection, system, lock=True)
    if before.paused:
        connection.execute(
            update(downstream_controls)
            .where(downstream_controls.c.system == system)
            .values(
                paused=False, paused_by=None, pause_reason=None, paused_since=None, paused_until=None, updated_at=now
            )
        )
        outcome, note = RESUMED, f"{system} resumed after {_held(before, now)}"
    else:
        outcome, note = NOT_PAUSED, f"{system} was not paused: nothing changed"
    after = read_control(connection, system)
    action_id = _audit(
        connection, RESUME, system, actor=actor, reason=reason, before=before, outcome=outcome, note=note
    )
    return Change(system, outcome, action_id, before, after)


def ensure_row(connection: Connection, system: str) -> None:
    """Migration 0004 seeds the four systems; a system added later gets its row on its first pause."""
    exists = connection.execute(select(downstream_controls.c.system).where(downstream_controls.c.system == system))
    if exists.first() is None:
        connection.execute(
            downstream_controls.insert().values(
                system=system, paused=False, breaker=BREAKER_CLOSED, consecutive_failures=0
            )
        )


def _held(before: Control, now: datetime) -> str:
    if before.paused_since is None:
        return "an unknown time"
    minutes = max(0, int((now - before.paused_since).total_seconds() // 60))
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


def _audit(
    connection: Connection,
    kind: str,
    system: str,
    *,
    actor: str,
    reason: str,
    before: Control,
    outcome: str,
    note: str,
) -> int:
    options: dict[str, Any] = {}
    after = read_control(connection, system)
    if after.paused_until is not None:
        options["until"] = after.paused_until.isoformat()
    counts: dict[str, Any] = {"outcome": outcome}
    if before.paused and before.paused_since is not None:
        counts["paused_since"] = before.paused_since.isoformat()
        counts["paused_by"] = before.paused_by
    return create_action(
        connection,
        kind=kind,
        actor=actor,
        reason=reason,
        selection={"system": system},
        options=options,
        status=FINISHED,
        counts=counts,
        note=note,
    )
