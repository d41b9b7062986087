"""Whether a database's schema is the one this code knows, for the commands that must not migrate it."""

from __future__ import annotations

from sqlalchemy import Engine

from workers.store.db import alembic_config


class SchemaNotCurrent(Exception):
    """The schema is missing or at another revision; the message says to run `flowfleet db upgrade`."""


def require_current_schema(engine: Engine) -> None:
    """Return if the schema is at the latest revision; else SchemaNotCurrent. A database that cannot be
    reached raises SQLAlchemy's OperationalError, for the caller to name."""
    from alembic.runtime.migration import MigrationContext  # noqa: PLC0415  # Alembic only when a command checks
    from alembic.script import ScriptDirectory  # noqa: PLC0415  # as above

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    with engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
    if current is None:
        raise SchemaNotCurrent("the database has no archive yet: run `flowfleet db upgrade`")
    if current != head:
        raise SchemaNotCurrent(f"the archive's schema is at revision {current}, not {head}: run `flowfleet db upgrade`")
