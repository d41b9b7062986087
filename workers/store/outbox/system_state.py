"""Each system's row in `downstream_controls`: the operator's pause, and the fleet-wide circuit breaker's state."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, select

from workers.store.tables import downstream_controls

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


@dataclass(frozen=True)
class Control:
    """What the relay obeys for one system."""

    system: str
    paused: bool = False
    paused_until: datetime | None = None
    breaker: str = CLOSED
    consecutive_failures: int = 0
    breaker_opened_at: datetime | None = None
    breaker_probe_at: datetime | None = None

    def paused_at(self, now: datetime) -> bool:
        """Paused, and the pause's `--until` (if any) not passed."""
        return self.paused and (self.paused_until is None or self.paused_until > now)


def read_control(connection: Connection, system: str) -> Control:
    """The system's row (a missing row means: not paused, breaker closed)."""
    row = connection.execute(select(downstream_controls).where(downstream_controls.c.system == system)).first()
    return Control(system) if row is None else _control(system, row)


def ensure_control(connection: Connection, system: str) -> None:
    """Give `system` its row if the migration did not (a system added later)."""
    if connection.execute(select(downstream_controls.c.system).where(downstream_controls.c.system == system)).first():
        return
    connection.execute(
        downstream_controls.insert().values(system=system, paused=False, breaker=CLOSED, consecutive_failures=0)
    )


def set_pause(
    connection: Connection,
    system: str,
    *,
    paused: bool,
    by: str,
    reason: str | None,
    until: datetime | None,
    now: datetime,
) -> None:
    """Pause (or resume) the relay's sends to `system`, fleet-wide; in-flight requests finish."""
    ensure_control(connection, system)
    connection.execute(
        downstream_controls.update()
        .where(downstream_controls.c.system == system)
        .values(
            paused=paused,
            paused_by=by if paused else None,
            pause_reason=reason if paused else None,
            paused_since=now if paused else None,
            paused_until=until if paused else None,
            updated_at=now,
        )
    )


def record_success(connection: Connection, system: str, now: datetime) -> str | None:
    """A request succeeded: failures reset; returns the breaker's previous state when this closed it."""
    before = _locked(connection, system)
    connection.execute(
        downstream_controls.update()
        .where(downstream_controls.c.system == system)
        .values(consecutive_failures=0, breaker=CLOSED, breaker_opened_at=None, breaker_probe_at=None, updated_at=now)
    )
    return before.breaker if before.breaker != CLOSED else None


def record_failure(connection: Connection, system: str, *, threshold: int, now: datetime) -> bool:
    """A transient failure: counted; True when it opened (or re-opened, after a failed probe) the breaker."""
    before = _locked(connection, system)
    failures = before.consecutive_failures + 1
    opens = before.breaker == HALF_OPEN or (before.breaker == CLOSED and failures >= threshold)
    values: dict[str, object] = {"consecutive_failures": failures, "updated_at": now}
    if opens:
        values |= {"breaker": OPEN, "breaker_opened_at": now, "breaker_probe_at": None}
    connection.execute(downstream_controls.update().where(downstream_controls.c.system == system).values(**values))
    return opens


def take_probe(
    connection: Connection, system: str, *, cooldown: timedelta, probe_timeout: timedelta, now: datetime
) -> bool:
    """After the cool-down, one relay in the fleet gets to send one probe delivery (half-open)."""
    control = _locked(connection, system)
    due = (control.breaker == OPEN and (control.breaker_opened_at or now) <= now - cooldown) or (
        # a prober that died holds the half-open state no longer than a lease
        control.breaker == HALF_OPEN and (control.breaker_probe_at or now) <= now - probe_timeout
    )
    if not due:
        return False
    connection.execute(
        downstream_controls.update()
        .where(downstream_controls.c.system == system)
        .values(breaker=HALF_OPEN, breaker_probe_at=now, updated_at=now)
    )
    return True


def abandon_probe(connection: Connection, system: str) -> None:
    """Nothing was due to probe with: back to open, keeping the cool-down passed, so the next delivery probes."""
    connection.execute(
        downstream_controls.update()
        .where(downstream_controls.c.system == system, downstream_controls.c.breaker == HALF_OPEN)
        .values(breaker=OPEN, breaker_probe_at=None)
    )


def _locked(connection: Connection, system: str) -> Control:
    """The row, locked until the transaction ends on PostgreSQL, so breaker moves do not race."""
    ensure_control(connection, system)
    query = select(downstream_controls).where(downstream_controls.c.system == system)
    if connection.dialect.name == "postgresql":
        query = query.with_for_update()
    row = connection.execute(query).first()
    assert row is not None, "ensure_control gave the system its row"
    return _control(system, row)


def _control(system: str, row: Any) -> Control:
    return Control(
        system=system,
        paused=bool(row.paused),
        paused_until=_aware(row.paused_until),
        breaker=str(row.breaker),
        consecutive_failures=int(row.consecutive_failures),
        breaker_opened_at=_aware(row.breaker_opened_at),
        breaker_probe_at=_aware(row.breaker_probe_at),
    )


def _aware(value: datetime | None) -> datetime | None:
    """SQLite hands timestamps back naive; they were written in UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)
