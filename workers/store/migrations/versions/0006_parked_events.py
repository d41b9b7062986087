"""parked events: what waits behind a dead letter it depends on, released when that record is applied

Revision ID: 0006
Revises: 0005

Tables only: nothing existing changes.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "parked_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("parent_id", sa.Integer(), nullable=False),
        sa.Column("flow", sa.String(50), nullable=False),
        sa.Column("contract", sa.String(200), nullable=False),
        sa.Column("message_id", sa.String(200), nullable=False),
        sa.Column("dedup_key", sa.String(200), nullable=False),
        sa.Column("business_keys", sa.JSON(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("headers", sa.JSON(), nullable=False),
        sa.Column("parked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_parked_events_parent_status", "parked_events", ["parent_id", "status"])
    op.create_index("ix_parked_events_status_parked_at", "parked_events", ["status", "parked_at"])


def downgrade() -> None:
    op.drop_index("ix_parked_events_status_parked_at", table_name="parked_events")
    op.drop_index("ix_parked_events_parent_status", table_name="parked_events")
    op.drop_table("parked_events")
