"""Read-only aggregates of the outbox per downstream system: what `downstream status` and the exporter show.

Three grouped SELECTs over `deliveries` (pending, dead-lettered, delivered lately), never a row per
delivery and never a write, so a read-only database user is enough and a scrape stays cheap.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Connection, Integer, case, func, select

from workers.store.outbox.controls import aware
from workers.store.outbox.status import DEAD_LETTERED, DELIVERED, PENDING
from workers.store.tables import deliveries

#: The windows `downstream status` reports throughput over.
RECENT_WINDOWS = (timedelta(minutes=5), timedelta(minutes=15))


@dataclass(frozen=True)
class SystemBacklog:
    """One system's deliveries right now."""

    system: str
    #: Recorded and not yet confirmed, superseded or dead-lettered (waiting, retrying, held, paused, in flight).
    pending: int = 0
    #: When the oldest of them was recorded (its effect committed).
    oldest_pending_at: datetime | None = None
    #: Pending past the system's objective.
    overdue: int = 0
    #: Pending and claimed by a relay whose lease has not expired: a request is out.
    in_flight: int = 0
    #: Pending that have failed at least once (retrying or waiting behind their own failure).
    failing: int = 0
    #: Refused for good or out of budget: dead letters of stage `delivery` not replayed or discarded yet.
    dead_lettered: int = 0
    #: Confirmed by the system within each of RECENT_WINDOWS.
    delivered_recently: tuple[int, ...] = (0,) * len(RECENT_WINDOWS)

    def oldest_pending_seconds(self, now: datetime) -> float:
        return 0.0 if self.oldest_pending_at is None else max(0.0, (now - self.oldest_pending_at).total_seconds())

    def per_minute(self) -> tuple[float, ...]:
        """Deliveries per minute over each of RECENT_WINDOWS."""
        pairs = zip(self.delivered_recently, RECENT_WINDOWS, strict=True)
        return tuple(count / (window.total_seconds() / 60) for count, window in pairs)


def overdue_cutoff(objectives: Mapping[str, timedelta], now: datetime) -> ColumnElement[datetime]:
    """Per row, the moment before which its system's pending deliveries are overdue."""
    longest = max(objectives.values(), default=timedelta(0))
    whens = {system: now - objective for system, objective in objectives.items()}
    return case(whens, value=deliveries.c.system, else_=now - longest)


def _count_if(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0).cast(Integer)


def backlog(connection: Connection, *, now: datetime, objectives: Mapping[str, timedelta]) -> dict[str, SystemBacklog]:
    """Every system that has deliveries, or an objective, by system (zeros where nothing is there)."""
    d = deliveries.c
    pending_rows = connection.execute(
        select(
            d.system,
            func.count(),
            func.min(d.created_at),
            _count_if(d.created_at < overdue_cutoff(objectives, now)),
            _count_if(d.lease_expires_at > now),
            _count_if(d.first_failed_at.is_not(None)),
        )
        .where(d.status == PENDING)
        .group_by(d.system)
    ).all()
    dead_rows = connection.execute(
        select(d.system, func.count()).where(d.status == DEAD_LETTERED).group_by(d.system)
    ).all()
    longest = max(RECENT_WINDOWS)
    recent_rows = connection.execute(
        select(d.system, *(_count_if(d.finished_at >= now - window) for window in RECENT_WINDOWS))
        .where(d.status == DELIVERED, d.finished_at >= now - longest)
        .group_by(d.system)
    ).all()
    found = {system: SystemBacklog(system) for system in objectives}

    def merge(system: str, **values: Any) -> None:
        found[system] = replace(found.get(system) or SystemBacklog(system), **values)

    for system, count, oldest, overdue, in_flight, failing in pending_rows:
        merge(
            system,
            pending=int(count),
            oldest_pending_at=aware(oldest),
            overdue=int(overdue),
            in_flight=int(in_flight),
            failing=int(failing),
        )
    for system, count in dead_rows:
        merge(system, dead_lettered=int(count))
    for system, *counts in recent_rows:
        merge(system, delivered_recently=tuple(int(c) for c in counts))
    return dict(sorted(found.items()))


def last_errors(connection: Connection) -> dict[str, str]:
    """Per system, the error of its most recently failed pending delivery (what `downstream status` quotes)."""
    d = deliveries.c
    newest = (
        select(d.system, func.max(d.id).label("id"))
        .where(d.status == PENDING, d.last_error.is_not(None))
        .group_by(d.system)
        .subquery()
    )
    rows = connection.execute(select(d.system, d.last_error).join(newest, newest.c.id == d.id)).all()
    return {system: str(error) for system, error in rows}
