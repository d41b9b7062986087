"""Alembic environment: runs migrations on the connection handed over by workers.store.db.migrate."""

from __future__ import annotations

from alembic import context

from workers.store.tables import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata)
with context.begin_transaction():
    context.run_migrations()
