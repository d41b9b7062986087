"""The weekly review's figures on a seeded SQLite archive: failures, recovery, interventions, systems, decisions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from tests.support.review_seed import DAY, EXPECTED_UNDECIDED, assert_the_seeded_week, seed_week
from workers.store.archive.review import Review, review

OBJECTIVES = {"erp": timedelta(minutes=15), "channels": timedelta(minutes=5)}


def reviewed(engine: Engine, now: datetime, since: datetime) -> Review:
    with engine.connect() as connection:
        return review(connection, since=since, until=now, objectives=OBJECTIVES)


def test_the_seeded_week_gives_its_figures(engine: Engine) -> None:
    now = datetime.now(UTC)
    with engine.begin() as connection:
        seed_week(connection, now)

    assert_the_seeded_week(reviewed(engine, now, now - 7 * DAY))


def test_an_empty_window_has_no_failures_recoveries_or_interventions_but_still_the_open_groups(engine: Engine) -> None:
    now = datetime.now(UTC)
    with engine.begin() as connection:
        seed_week(connection, now)

    found = reviewed(engine, now, now - timedelta(hours=1))

    assert (found.failures, found.recoveries, found.interventions) == ([], [], [])
    assert found.mismatches["erp"] == {}, "the overdue delivery was recorded before the window"
    assert found.backlog["erp"].pending == 1, "the backlog is now, whatever the window"
    assert {g["fingerprint"] for g in found.undecided} == set(EXPECTED_UNDECIDED)
