"""Engine creation for SQLite (embedded) and PostgreSQL, and schema migration with Alembic.

Alembic is imported only to migrate: a process that never migrates does not carry it.

PostgreSQL connections are not pinged at checkout (`pool_pre_ping`), which cost one round trip per
message. A connection the server dropped is found out by the first statement sent on it instead:
SQLAlchemy raises a disconnect `OperationalError`, invalidates that connection and every other one
the pool held before it (they are replaced at their next checkout), and the failure policy counts
the error as transient, so the message it broke is retried. tests/integration/test_lost_database_connections.py
kills every connection of a running worker and exporter to prove it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).with_name("migrations")
#: Key of the PostgreSQL advisory lock that serialises concurrent migrations at fleet start.
MIGRATION_LOCK_KEY = 0x666C6F77
#: Connections a PostgreSQL pool keeps open when the caller does not say how many threads use it.
DEFAULT_POOL_SIZE = 10
#: Connections opened beyond the pool's size at a peak, and closed again when given back.
POOL_OVERFLOW = 10


def make_engine(url: str, *, pool_size: int = DEFAULT_POOL_SIZE) -> Engine:
    """An engine for `url`; `postgresql://` is served by psycopg 3.

    `pool_size` is how many PostgreSQL connections stay open for reuse: as many as the process has
    threads that hold one at the same time, so none is opened and closed per use at a steady load.
    """
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(parsed, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(parsed, pool_size=pool_size, max_overflow=POOL_OVERFLOW)


def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]  # DB-API connection, untyped
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def alembic_config() -> Config:
    """Alembic's configuration for this package's migrations (no ini file needed)."""
    from alembic.config import Config  # noqa: PLC0415  # Alembic only where migrations are read

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def migrate(engine: Engine) -> None:
    """Bring the schema to the latest revision; safe to call from many processes at once."""
    from alembic import command  # noqa: PLC0415  # Alembic only to migrate

    config = alembic_config()
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
