"""indexes that let the records list and a group's page walk their cursor at any archive size

Revision ID: 0005
Revises: 0004

The console's list is `WHERE status = ? [AND flow = ? | AND fingerprint = ?] [AND id < cursor]
ORDER BY id DESC LIMIT 51`. Without an index that ends in `id`, PostgreSQL walks the primary key
backwards and filters, which reads the whole table when the open records are few and old (the usual
archive: most resolved). Each new index keeps the old one's columns as its prefix, so the old one goes.
Plain CREATE INDEX (migrations run in one transaction): it holds writes to `dead_letters` for the
seconds it takes, while the drain's inserts wait.
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_dead_letters_status_id", "dead_letters", ["status", "id"])
    op.create_index("ix_dead_letters_status_flow_id", "dead_letters", ["status", "flow", "id"])
    op.create_index("ix_dead_letters_fingerprint_status_id", "dead_letters", ["fingerprint", "status", "id"])
    op.drop_index("ix_dead_letters_status_flow", table_name="dead_letters")
    op.drop_index("ix_dead_letters_fingerprint", table_name="dead_letters")


def downgrade() -> None:
    op.create_index("ix_dead_letters_fingerprint", "dead_letters", ["fingerprint"])
    op.create_index("ix_dead_letters_status_flow", "dead_letters", ["status", "flow"])
    op.drop_index("ix_dead_letters_fingerprint_status_id", table_name="dead_letters")
    op.drop_index("ix_dead_letters_status_flow_id", table_name="dead_letters")
    op.drop_index("ix_dead_letters_status_id", table_name="dead_letters")
