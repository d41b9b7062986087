"""Dialect-aware INSERT ... ON CONFLICT for SQLite and PostgreSQL alike: ignore the conflict, or update if newer."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Column, Connection, Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.dml import Insert

#: One statement per (dialect, table, returned column), built once: the dedup claim runs it for every
#: message, and rebuilding the construct (and its cache key) each time cost more than the SQL itself.
_STATEMENTS: dict[tuple[str, str, str], Insert] = {}
#: The newest-wins upserts, likewise: per (dialect, table, ordering column, columns written).
_NEWER: dict[tuple[str, str, str, tuple[str, ...]], Insert] = {}


def _dialect_name(connection: Connection) -> str:
    return "postgresql" if connection.dialect.name == "postgresql" else "sqlite"


def _insert(dialect_name: str, table: Table) -> postgresql.Insert | sqlite.Insert:
    """The dialect's own `insert`, which knows ON CONFLICT."""
    return postgresql.insert(table) if dialect_name == "postgresql" else sqlite.insert(table)


def insert_ignoring_conflict(
    connection: Connection, table: Table, values: dict[str, Any], returning: Column[Any]
) -> Any:
    """Insert `values` unless a unique key already holds them; return `returning` of the new row or None."""
    dialect_name = _dialect_name(connection)
    key = (dialect_name, table.name, returning.name)
    statement = _STATEMENTS.get(key)
    if statement is None:
        statement = _STATEMENTS[key] = _insert(dialect_name, table).on_conflict_do_nothing().returning(returning)
    return connection.execute(statement, values).scalar_one_or_none()


def upsert_if_newer(connection: Connection, table: Table, values: dict[str, Any], *, newer: Column[Any]) -> bool:
    """Insert `values`, or overwrite the row of their primary key only if `values[newer.name]` is greater.

    One statement, so the database decides, whatever the interleaving: a concurrent insert of the same
    key is waited for, then compared. False means the stored row was as new or newer and is unchanged.
    """
    dialect_name = _dialect_name(connection)
    key_columns = [column.name for column in table.primary_key.columns]
    written = tuple(name for name in values if name not in key_columns)
    cache_key = (dialect_name, table.name, newer.name, written)
    statement = _NEWER.get(cache_key)
    if statement is None:
        insert = _insert(dialect_name, table)
        statement = _NEWER[cache_key] = insert.on_conflict_do_update(
            index_elements=key_columns,
            set_={name: insert.excluded[name] for name in written},
            where=insert.excluded[newer.name] > table.c[newer.name],
        ).returning(table.c[key_columns[0]])
    return connection.execute(statement, values).first() is not None
