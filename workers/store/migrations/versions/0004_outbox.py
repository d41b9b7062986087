"""the transactional outbox: deliveries recorded with each effect, and each downstream system's pause and breaker

Revision ID: 0004
Revises: 0003

Tables only: nothing existing changes. `downstream_controls` gets a row per known system so that pausing
is an UPDATE every relay sees; the list is written out here so this revision keeps meaning what it means.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

SYSTEMS = ("erp", "channels", "notify", "payments")


def upgrade() -> None:
    op.create_table(
        "deliveries",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("system", sa.String(32), nullable=False),
        sa.Column("method", sa.String(8), nullable=False),
        sa.Column("path", sa.String(1000), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("idempotency_key", sa.String(600), nullable=False),
        sa.Column("ordering_key", sa.String(300), nullable=False),
        sa.Column("supersede_key", sa.String(300), nullable=True),
        sa.Column("flow", sa.String(50), nullable=False),
        sa.Column("contract", sa.String(100), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.String(200), nullable=False),
        sa.Column("dedup_key", sa.String(200), nullable=False),
        sa.Column("business_keys", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("throttles", sa.Integer(), nullable=False),
        sa.Column("first_failed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("lease_owner", sa.String(100), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("dead_letter_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_deliveries_due", "deliveries", ["system", "status", "next_attempt_at"])
    op.create_index("ix_deliveries_ordering", "deliveries", ["ordering_key", "id"])
    op.create_index("ix_deliveries_supersede", "deliveries", ["supersede_key", "status"])
    op.create_index("ix_deliveries_message", "deliveries", ["message_id"])
    op.create_index("ix_deliveries_finished", "deliveries", ["status", "finished_at"])
    controls = op.create_table(
        "downstream_controls",
        sa.Column("system", sa.String(32), nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("paused_by", sa.String(200), nullable=True),
        sa.Column("pause_reason", sa.Text(), nullable=True),
        sa.Column("paused_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("paused_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("breaker", sa.String(20), nullable=False),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False),
        sa.Column("breaker_opened_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("breaker_probe_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("system"),
    )
    op.bulk_insert(
        controls, [{"system": s, "paused": False, "breaker": "closed", "consecutive_failures": 0} for s in SYSTEMS]
    )


def downgrade() -> None:
    op.drop_table("downstream_controls")
    op.drop_index("ix_deliveries_finished", table_name="deliveries")
    op.drop_index("ix_deliveries_message", table_name="deliveries")
    op.drop_index("ix_deliveries_supersede", table_name="deliveries")
    op.drop_index("ix_deliveries_ordering", table_name="deliveries")
    op.drop_index("ix_deliveries_due", table_name="deliveries")
    op.drop_table("deliveries")
