"""An archive of 100,000 dead letters as on-call meets it, written by one INSERT … SELECT (PostgreSQL only).

Most records were resolved long ago and the open ones are few and old, so a list that walked the
primary key from the newest record would read nearly every row before it found a page of open ones.
"""

from __future__ import annotations

from sqlalchemy import Engine, text

RECORDS = 100_000
#: The oldest twentieth is open; the rest resolved.
OPEN = RECORDS // 20
FLOWS = ("orders", "payments", "inventory", "catalog", "fulfillment", "returns")
#: Twenty failure groups, `fp0` … `fp19`, spread evenly.
GROUPS = 20

_SEED = f"""
INSERT INTO dead_letters (dead_letter_key, flow, queue, stage, contract, version, message_id, dedup_key,
  business_keys, error_type, error_message, field_paths, attempts, first_failed_at, last_failed_at, archived_at,
  fingerprint, status, body, headers)
SELECT 'k' || n, (ARRAY[{", ".join(f"'{flow}'" for flow in FLOWS)}])[1 + n % {len(FLOWS)}],
  'q', 'contract', 'order.created', 2, 'm' || n, 'ORD-' || n, '{{}}'::json, 'ValidationError', 'bad', '[]'::json, 1,
  now(), now(), now(), 'fp' || (n % {GROUPS}), CASE WHEN n <= {OPEN} THEN 'open' ELSE 'resolved' END,
  '\\x00'::bytea, '{{}}'::json
FROM generate_series(1, {RECORDS}) AS n
"""


def seed_large_archive(engine: Engine) -> None:
    """Fill a migrated, empty PostgreSQL archive and refresh the planner's statistics."""
    with engine.begin() as connection:
        connection.execute(text(_SEED))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE dead_letters"))
