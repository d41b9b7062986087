"""dead-letter operations: operator actions, per-message replay outcomes, business-key search, replay links

Revision ID: 0003
Revises: 0002

Plain columns are added to `dead_letters` (no batch rebuild: on SQLite with foreign keys on, rebuilding
the table would cascade-delete its audit trail), new tables hold the rest, and `dead_letter_keys` is
backfilled from the records already archived. The backfill is written out here, not imported, so this
revision keeps meaning what it means when the application code moves on.
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("dead_letters", sa.Column("replay_of", sa.Integer(), nullable=True))
    op.add_column("dead_letters", sa.Column("replay_action_id", sa.Integer(), nullable=True))
    op.add_column("dead_letters", sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_dead_letters_replay_of", "dead_letters", ["replay_of"])
    op.create_index("ix_dead_letters_archived_at", "dead_letters", ["archived_at"])
    op.create_table(
        "dead_letter_actions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("selection", sa.JSON(), nullable=False),
        sa.Column("cutoff", sa.DateTime(timezone=True), nullable=True),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("counts", sa.JSON(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("owner", sa.String(64), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_dead_letter_actions_started_at", "dead_letter_actions", ["started_at"])
    op.create_table(
        "dead_letter_replays",
        sa.Column("action_id", sa.Integer(), nullable=False),
        sa.Column("dead_letter_id", sa.Integer(), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(20), nullable=False),
        sa.Column("outcome_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("new_dead_letter_id", sa.Integer(), nullable=True),
        sa.Column("body", sa.LargeBinary(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["action_id"], ["dead_letter_actions.id"]),
        sa.ForeignKeyConstraint(["dead_letter_id"], ["dead_letters.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("action_id", "dead_letter_id"),
    )
    op.create_index("ix_dead_letter_replays_dead_letter_id", "dead_letter_replays", ["dead_letter_id"])
    keys = op.create_table(
        "dead_letter_keys",
        sa.Column("dead_letter_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("value", sa.String(200), nullable=False),
        sa.ForeignKeyConstraint(["dead_letter_id"], ["dead_letters.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("dead_letter_id", "name", "value"),
    )
    op.create_index("ix_dead_letter_keys_name_value", "dead_letter_keys", ["name", "value"])
    _backfill_keys(keys)
    # Nothing set these statuses before this revision; should a record carry one, its archive time stands in.
    op.execute(
        "UPDATE dead_letters SET closed_at = archived_at "
        "WHERE status IN ('resolved', 'discarded') AND closed_at IS NULL"
    )


def _backfill_keys(keys: sa.Table) -> None:
    bind = op.get_bind()
    records = sa.table("dead_letters", sa.column("id"), sa.column("business_keys"), sa.column("body"))
    rows = bind.execute(sa.select(records.c.id, records.c.business_keys, records.c.body)).all()
    values = [
        {"dead_letter_id": row.id, "name": name, "value": value}
        for row in rows
        for name, value in sorted(_keys(row.business_keys, row.body))
    ]
    if values:
        bind.execute(keys.insert(), values)


def _keys(business_keys: Any, body: Any) -> set[tuple[str, str]]:
    """The record's business keys, and the `*_id` / `sku` fields at the top of its data."""
    if isinstance(business_keys, str):
        business_keys = json.loads(business_keys)
    found = {(str(k)[:100], str(v)[:200]) for k, v in (business_keys or {}).items() if v is not None}
    try:
        document = json.loads(bytes(body))
    except (TypeError, ValueError):
        return found
    data = document.get("data") if isinstance(document, dict) else None
    if isinstance(data, dict):
        for name, value in data.items():
            if (name.endswith("_id") or name == "sku") and isinstance(value, str | int) and not isinstance(value, bool):
                found.add((name[:100], str(value)[:200]))
    return found


def downgrade() -> None:
    op.drop_index("ix_dead_letter_keys_name_value", table_name="dead_letter_keys")
    op.drop_table("dead_letter_keys")
    op.drop_index("ix_dead_letter_replays_dead_letter_id", table_name="dead_letter_replays")
    op.drop_table("dead_letter_replays")
    op.drop_index("ix_dead_letter_actions_started_at", table_name="dead_letter_actions")
    op.drop_table("dead_letter_actions")
    op.drop_index("ix_dead_letters_archived_at", table_name="dead_letters")
    op.drop_index("ix_dead_letters_replay_of", table_name="dead_letters")
    for column in ("closed_at", "replay_action_id", "replay_of"):
        op.drop_column("dead_letters", column)
