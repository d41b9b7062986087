"""The console's records list walks an index ending in `id` on PostgreSQL at 100,000 records (EXPLAIN, not a timer)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, event

from tests.integration.conftest import Database
from tests.support.large_archive import RECORDS, seed_large_archive
from workers.store.archive.pages import dead_letter_page
from workers.store.archive.records import DeadLetterFilter
from workers.store.db import make_engine, migrate


@pytest.fixture
def archive(database: Database) -> Iterator[Engine]:
    engine = make_engine(database.url)
    migrate(engine)
    seed_large_archive(engine)
    try:
        yield engine
    finally:
        engine.dispose()


def _plan(connection: Connection, where: DeadLetterFilter, before: int | None) -> str:
    """The plan PostgreSQL chooses for the very statement the list runs (caught on its way to the driver)."""
    caught: list[tuple[str, Any]] = []

    def catch(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "ORDER BY" in statement.upper():
            caught.append((statement, parameters))

    event.listen(connection, "before_cursor_execute", catch)
    try:
        dead_letter_page(connection, where, before=before, limit=50)
    finally:
        event.remove(connection, "before_cursor_execute", catch)
    [(statement, parameters)] = caught
    rows = connection.exec_driver_sql("EXPLAIN " + statement, parameters).all()
    return "\n".join(str(row[0]) for row in rows)


@pytest.mark.parametrize(
    ("where", "before", "index"),
    [
        (DeadLetterFilter(status="open"), None, "ix_dead_letters_status_id"),
        (DeadLetterFilter(status="open"), RECORDS // 40, None),
        (DeadLetterFilter(status="open", flow="payments"), None, "ix_dead_letters_status_flow_id"),
        (DeadLetterFilter(status="open", fingerprint="fp7"), None, "ix_dead_letters_fingerprint_status_id"),
    ],
    ids=["open", "open-next-page", "open-one-flow", "open-one-group"],
)
def test_the_list_query_walks_an_index_ending_in_id_without_sorting(
    archive: Engine, where: DeadLetterFilter, before: int | None, index: str | None
) -> None:
    """`index` None: a later page, whose cursor bounds the walk (the primary key will do among open rows)."""
    with archive.connect() as connection:
        plan = _plan(connection, where, before)
    if index is None:
        assert "Index Scan Backward using" in plan and "id < " in plan.split("Index Cond:", 1)[1], plan
    else:
        assert f"Index Scan Backward using {index} on dead_letters" in plan, plan
    assert "Sort" not in plan and "Seq Scan" not in plan, plan
