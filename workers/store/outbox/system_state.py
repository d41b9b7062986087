"""The fleet-wide circuit breaker's moves in each system's `downstream_controls` row (the pause is controls.py's)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Connection

from workers.store.outbox.controls import BREAKER_CLOSED, Control, ensure_row, read_control
from workers.store.tables import downstream_controls

CLOSED, OPEN, HALF_OPEN = BREAKER_CLOSED, "open", "half_open"


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
    ensure_row(connection, system)
    return read_control(connection, system, lock=True)
