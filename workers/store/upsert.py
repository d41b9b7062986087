"""Dialect-aware INSERT ... ON CONFLICT DO NOTHING, for SQLite and PostgreSQL alike."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Column, Connection, Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.dml import Insert

#: One statement per (dialect, table, returned column), built once: the dedup claim runs it for every
#: message, and rebuilding the construct (and its cache key) each time cost more than the SQL itself.
_STATEMENTS: dict[tuple[str, str, str], Insert] = {}


def insert_ignoring_conflict(
    connection: Connection, table: Table, values: dict[str, Any], returning: Column[Any]
) -> Any:
    """Insert `values` unless a unique key already holds them; return `returning` of the new row or None."""
    dialect_name = "postgresql" if connection.dialect.name == "postgresql" else "sqlite"
    key = (dialect_name, table.name, returning.name)
    statement = _STATEMENTS.get(key)
    if statement is None:
        dialect = postgresql if dialect_name == "postgresql" else sqlite
        statement = _STATEMENTS[key] = dialect.insert(table).on_conflict_do_nothing().returning(returning)
    return connection.execute(statement, values).scalar_one_or_none()
