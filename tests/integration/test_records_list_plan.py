"""The console's records list walks an index ending in `id` on PostgreSQL at 100,000 records (EXPLAIN, not a timer)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, event, text

from tests.integration.conftest import Database
from workers.store.archive.pages import dead_letter_page
from workers.store.archive.records import DeadLetterFilter
from workers.store.db import make_engine, migrate

RECORDS = 100_000
#: The usual archive: most records resolved long ago, the open ones few and old, so a walk of the
#: primary key from the newest would read nearly every row before it found a page of open ones.
SEED = f"""
INSERT INTO dead_letters (dead_letter_key, flow, queue, stage, contract, version, message_id, dedup_key,
  business_keys, error_type, error_message, field_paths, attempts, first_failed_at, last_failed_at, archived_at,
  fingerprint, status, body, headers)
SELECT 'k' || n, (ARRAY['orders', 'payments', 'inventory', 'catalog', 'fulfillment', 'returns'])[1 + n % 6],
  'q', 'contract', 'order.created', 2, 'm' || n, 'ORD-' || n, '{{}}'::json, 'ValidationError', 'bad', '[]'::json, 1,
  now(), now(), now(), 'fp' || (n % 20), CASE WHEN n <= {RECORDS // 20} THEN 'open' ELSE 'resolved' END,
  '\\x00'::bytea, '{{}}'::json
FROM generate_series(1, {RECORDS}) AS n
"""


@pytest.fixture
def archive(database: Database) -> Iterator[Engine]:
    engine = make_engine(database.url)
    migrate(engine)
    with engine.begin() as connection:
        connection.execute(text(SEED))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE dead_letters"))
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
