"""The weekly review's queries on PostgreSQL: the seeded week gives the figures it gives on SQLite."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.integration.conftest import Database
from tests.support.review_seed import DAY, assert_the_seeded_week, seed_week
from workers.store.archive.review import review
from workers.store.db import make_engine, migrate


def test_the_seeded_week_gives_its_figures_on_postgresql(database: Database) -> None:
    engine = make_engine(database.url)
    try:
        migrate(engine)
        now = datetime.now(UTC)
        with engine.begin() as connection:
            seed_week(connection, now)
        with engine.connect() as connection:
            found = review(
                connection,
                since=now - 7 * DAY,
                until=now,
                objectives={"erp": timedelta(minutes=15), "channels": timedelta(minutes=5)},
            )
        assert_the_seeded_week(found)
    finally:
        engine.dispose()
