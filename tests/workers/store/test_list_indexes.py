"""Migration 0005 builds the records list's indexes exactly as the table metadata declares them, and rolls back."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, inspect

from tests.support.migrations import downgrade, upgrade
from workers.store.db import make_engine
from workers.store.tables import dead_letters


def _indexes(engine: Engine) -> dict[str, tuple[str, ...]]:
    return {
        str(i["name"]): tuple(str(c) for c in i["column_names"]) for i in inspect(engine).get_indexes("dead_letters")
    }


def test_the_migrated_indexes_are_the_declared_ones_and_0004s_come_back_on_downgrade(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'indexes.db'}")
    try:
        upgrade(engine, "head")
        declared = {str(i.name): tuple(c.name for c in i.columns) for i in dead_letters.indexes}
        assert _indexes(engine) == declared
        assert declared["ix_dead_letters_status_id"] == ("status", "id")
        assert declared["ix_dead_letters_fingerprint_status_id"] == ("fingerprint", "status", "id")

        downgrade(engine, "0004")
        before = _indexes(engine)
        assert before["ix_dead_letters_status_flow"] == ("status", "flow") and "ix_dead_letters_status_id" not in before
        upgrade(engine, "head")
        assert _indexes(engine) == declared
    finally:
        engine.dispose()
