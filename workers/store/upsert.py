"""Dialect-aware INSERT ... ON CONFLICT DO NOTHING, for SQLite and PostgreSQL alike."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Table
from sqlalchemy.dialects import postgresql, sqlite


def insert_ignoring_conflict(connection: Connection, table: Table, values: dict[str, Any], returning: Any) -> Any:
    """Insert `values` unless a unique key already holds them; return `returning` of the new row or None."""
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(table).values(values).on_conflict_do_nothing().returning(returning)
    return connection.execute(statement).scalar_one_or_none()
