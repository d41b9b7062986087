"""Read-only aggregates of the dead-letter archive for `flowfleet exporter`: open, oldest, new fingerprints, replays."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, and_, exists, func, select

from workers.store.archive.outcomes import PENDING
from workers.store.archive.status import OPEN
from workers.store.tables import dead_letter_replays, dead_letters


@dataclass(frozen=True)
class ArchiveStats:
    """What the archive holds right now, keyed by flow (and stage)."""

    #: Open dead letters per (flow, stage).
    open: dict[tuple[str, str], int]
    #: When the oldest open dead letter of each flow was dead-lettered (its last failure).
    oldest_open: dict[str, datetime]
    #: Distinct failure fingerprints per (flow, stage) that the archive first received within the window.
    new_fingerprints: dict[tuple[str, str], int]


def archive_stats(connection: Connection, *, now: datetime, new_window: timedelta) -> ArchiveStats:
    """Three grouped queries; only SELECTs, so a read-only database user is enough."""
    is_open = dead_letters.c.status == OPEN
    open_rows = connection.execute(
        select(dead_letters.c.flow, dead_letters.c.stage, func.count())
        .where(is_open)
        .group_by(dead_letters.c.flow, dead_letters.c.stage)
    )
    oldest_rows = connection.execute(
        select(dead_letters.c.flow, func.min(dead_letters.c.last_failed_at))
        .where(is_open)
        .group_by(dead_letters.c.flow)
    )
    cutoff = now - new_window
    earlier = dead_letters.alias("earlier")
    seen_before = exists().where(
        and_(
            earlier.c.fingerprint == dead_letters.c.fingerprint,
            earlier.c.flow == dead_letters.c.flow,
            earlier.c.archived_at < cutoff,
        )
    )
    new_rows = connection.execute(
        select(dead_letters.c.flow, dead_letters.c.stage, func.count(func.distinct(dead_letters.c.fingerprint)))
        .where(dead_letters.c.archived_at >= cutoff, ~seen_before)
        .group_by(dead_letters.c.flow, dead_letters.c.stage)
    )
    return ArchiveStats(
        open={(flow, stage): int(count) for flow, stage, count in open_rows},
        oldest_open={flow: _aware(oldest) for flow, oldest in oldest_rows if oldest is not None},
        new_fingerprints={(flow, stage): int(count) for flow, stage, count in new_rows},
    )


def _aware(value: datetime) -> datetime:
    """SQLite hands timestamps back without their zone; the archive writes them in UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


@dataclass(frozen=True)
class ReplayStats:
    """Replayed copies the broker confirmed that no worker has reported on yet, per flow."""

    pending: dict[str, int]
    #: When the oldest of them was published.
    oldest_pending: dict[str, datetime]


def replay_stats(connection: Connection) -> ReplayStats:
    """Copies sent by `dlq replay` (published) whose outcome is still pending: applied, duplicate and
    failed-again ones have been handled, unpublished ones are the replay's own business (it resumes them)."""
    waiting = and_(dead_letter_replays.c.outcome == PENDING, dead_letter_replays.c.published_at.is_not(None))
    rows = connection.execute(
        select(dead_letters.c.flow, func.count(), func.min(dead_letter_replays.c.published_at))
        .select_from(dead_letter_replays.join(dead_letters, dead_letters.c.id == dead_letter_replays.c.dead_letter_id))
        .where(waiting)
        .group_by(dead_letters.c.flow)
    ).all()
    return ReplayStats(
        pending={flow: int(count) for flow, count, _oldest in rows},
        oldest_pending={flow: _aware(oldest) for flow, _count, oldest in rows if oldest is not None},
    )
