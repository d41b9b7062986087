"""The weekly operational review's figures, read from the archive and the outbox: what `flowfleet report` shows.

Failures by flow, stage and group; time to recovery (dead-lettered -> resolved) of the chains resolved in
the window; every audited operator action in the window; the delivery backlog now and the
reconciliation mismatches of the window per system (the queries `downstream status` and `reconcile`
run); and the open failure groups no replay, repair or discard has ever touched. It only reads.
Stale events are not here: the pipeline counts them only in the metric flowfleet_stale_events_total.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from statistics import median
from typing import Any

from sqlalchemy import Connection, Integer, case, func, select

from workers.store.archive.records import DeadLetterFilter, dead_letter_groups
from workers.store.archive.status import OPEN, RESOLVED
from workers.store.outbox.backlog import SystemBacklog, backlog
from workers.store.outbox.controls import aware
from workers.store.outbox.unconfirmed import unconfirmed
from workers.store.tables import dead_letter_actions, dead_letter_events, dead_letters

#: The audit-trail entries that are an owner's decision on a record: it was replayed, repaired or discarded.
DECISIONS = ("replayed", "repaired", "discarded")


@dataclass(frozen=True)
class Failures:
    """Dead letters archived in the window for one flow, stage and failure group."""

    flow: str
    stage: str
    fingerprint: str
    error_type: str
    count: int
    #: Of them, replayed copies that failed again.
    refailed: int


@dataclass(frozen=True)
class Recovery:
    """One flow's dead letters resolved in the window: how long each stood from dead-lettered to resolved."""

    flow: str
    resolved: int
    median_seconds: float
    worst_seconds: float
    #: The record that took longest (the first of a replay chain).
    worst_id: int


@dataclass(frozen=True)
class Review:
    """Everything the weekly review shows for [since, until)."""

    since: datetime
    until: datetime
    failures: list[Failures]
    recoveries: list[Recovery]
    #: Every operator action started in the window, oldest first (dead_letter_actions rows).
    interventions: list[dict[str, Any]]
    backlog: dict[str, SystemBacklog]
    #: Per system, mismatches among the deliveries recorded in the window, by reason.
    mismatches: dict[str, Counter[str]]
    #: Open failure groups without an owner's decision, biggest first (`dlq groups` rows).
    undecided: list[dict[str, Any]]


def review(connection: Connection, *, since: datetime, until: datetime, objectives: Mapping[str, timedelta]) -> Review:
    mismatches: dict[str, Counter[str]] = {system: Counter() for system in objectives}
    for item in unconfirmed(connection, now=until, since=since, objectives=objectives):
        mismatches.setdefault(item.system, Counter())[item.reason] += 1
    return Review(
        since=since,
        until=until,
        failures=failures(connection, since=since, until=until),
        recoveries=recoveries(connection, since=since, until=until),
        interventions=interventions(connection, since=since, until=until),
        backlog=backlog(connection, now=until, objectives=objectives),
        mismatches=dict(sorted(mismatches.items())),
        undecided=undecided_groups(connection),
    )


def failures(connection: Connection, *, since: datetime, until: datetime) -> list[Failures]:
    """Per flow, stage and group, the dead letters archived in the window: one grouped SELECT."""
    d = dead_letters.c
    refailed = func.coalesce(func.sum(case((d.replay_of.is_not(None), 1), else_=0)), 0).cast(Integer)
    rows = connection.execute(
        select(d.flow, d.stage, d.fingerprint, func.max(d.error_type), func.count(), refailed)
        .where(d.archived_at >= since, d.archived_at < until)
        .group_by(d.flow, d.stage, d.fingerprint)
        .order_by(d.flow, d.stage, func.count().desc(), d.fingerprint)
    ).all()
    return [
        Failures(flow, stage, fp, str(kind), int(count), int(again)) for flow, stage, fp, kind, count, again in rows
    ]


def recoveries(connection: Connection, *, since: datetime, until: datetime) -> list[Recovery]:
    """Per flow, the chains resolved in the window, timed from their first record's archiving: a copy that
    failed again is part of its original's recovery, not a recovery of its own."""
    d = dead_letters.c
    rows = connection.execute(
        select(d.flow, d.id, d.archived_at, d.closed_at)
        .where(d.status == RESOLVED, d.replay_of.is_(None), d.closed_at >= since, d.closed_at < until)
        .order_by(d.flow, d.id)
    ).all()
    durations: dict[str, list[tuple[float, int]]] = {}
    for flow, record_id, archived_at, closed_at in rows:
        seconds = max(0.0, (closed_at - archived_at).total_seconds())  # both naive (SQLite) or both aware
        durations.setdefault(str(flow), []).append((seconds, int(record_id)))
    found = []
    for flow, timed in durations.items():
        worst, worst_id = max(timed, key=lambda pair: (pair[0], -pair[1]))
        found.append(Recovery(flow, len(timed), median(s for s, _ in timed), worst, worst_id))
    return found


def interventions(connection: Connection, *, since: datetime, until: datetime) -> list[dict[str, Any]]:
    """Every audited operator action started in the window, oldest first."""
    a = dead_letter_actions.c
    query = (
        select(a.id, a.kind, a.actor, a.reason, a.started_at, a.finished_at, a.status, a.selection, a.counts)
        .where(a.started_at >= since, a.started_at < until)
        .order_by(a.started_at, a.id)
    )
    rows = [dict(row) for row in connection.execute(query).mappings()]
    for row in rows:
        row["started_at"], row["finished_at"] = aware(row["started_at"]), aware(row["finished_at"])
    return rows


def undecided_groups(connection: Connection) -> list[dict[str, Any]]:
    """Open failure groups none of whose records, open or closed, was ever replayed, repaired or discarded."""
    d, e = dead_letters.c, dead_letter_events.c
    decided = set(
        connection.execute(
            select(d.fingerprint)
            .distinct()
            .join_from(dead_letters, dead_letter_events, e.dead_letter_id == d.id)
            .where(e.action.in_(DECISIONS))
        ).scalars()
    )
    groups = dead_letter_groups(connection, DeadLetterFilter(status=OPEN))
    return [group for group in groups if group["fingerprint"] not in decided]
