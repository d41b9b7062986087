"""the six flows: stock statuses and sequences, line progress, payments, shipments, returns, catalog

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_ZERO = sa.text("0")


def upgrade() -> None:
    with op.batch_alter_table("stock_levels") as table:
        table.add_column(sa.Column("return_pending", sa.Integer(), nullable=False, server_default=_ZERO))
        table.add_column(sa.Column("last_sequence", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("order_lines") as table:
        table.add_column(sa.Column("shipped", sa.Integer(), nullable=False, server_default=_ZERO))
        table.add_column(sa.Column("delivered", sa.Integer(), nullable=False, server_default=_ZERO))
        table.add_column(sa.Column("return_requested", sa.Integer(), nullable=False, server_default=_ZERO))
    op.create_index("ix_order_lines_sku_status", "order_lines", ["sku", "status"])
    op.create_table(
        "payments",
        sa.Column("payment_id", sa.String(64), primary_key=True),
        sa.Column("order_id", sa.String(64), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("authorized_minor", sa.BigInteger(), nullable=False),
        sa.Column("captured_minor", sa.BigInteger(), nullable=False),
        sa.Column("refunded_minor", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_payments_order_id", "payments", ["order_id"])
    op.create_table(
        "payment_operations",
        sa.Column("kind", sa.String(10), primary_key=True),
        sa.Column("operation_id", sa.String(64), primary_key=True),
        sa.Column("payment_id", sa.String(64), sa.ForeignKey("payments.payment_id"), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_payment_operations_payment_id", "payment_operations", ["payment_id"])
    op.create_table(
        "shipments",
        sa.Column("shipment_id", sa.String(64), primary_key=True),
        sa.Column("order_id", sa.String(64), sa.ForeignKey("orders.order_id"), nullable=False),
        sa.Column("location", sa.String(64), nullable=False),
        sa.Column("carrier", sa.String(500), nullable=False),
        sa.Column("tracking_number", sa.String(500), nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("dispatched_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_shipments_order_id", "shipments", ["order_id"])
    op.create_table(
        "shipment_lines",
        sa.Column("shipment_id", sa.String(64), sa.ForeignKey("shipments.shipment_id"), primary_key=True),
        sa.Column("line_id", sa.String(64), primary_key=True),
        sa.Column("quantity", sa.Integer(), nullable=False),
    )
    op.create_table(
        "returns",
        sa.Column("rma_id", sa.String(64), primary_key=True),
        sa.Column("order_id", sa.String(64), sa.ForeignKey("orders.order_id"), nullable=False),
        sa.Column("location", sa.String(64), nullable=False),
        sa.Column("status", sa.String(30), nullable=False),
        sa.Column("refunded_minor", sa.BigInteger(), nullable=False),
        sa.Column("receipts", sa.JSON(), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_returns_order_id", "returns", ["order_id"])
    op.create_table(
        "return_lines",
        sa.Column("rma_id", sa.String(64), sa.ForeignKey("returns.rma_id"), primary_key=True),
        sa.Column("line_id", sa.String(64), primary_key=True),
        sa.Column("sku", sa.String(64), nullable=False),
        sa.Column("requested", sa.Integer(), nullable=False),
        sa.Column("received", sa.Integer(), nullable=False),
        sa.Column("sellable", sa.Integer(), nullable=False),
        sa.Column("damaged", sa.Integer(), nullable=False),
    )
    op.create_table(
        "prices",
        sa.Column("sku", sa.String(64), primary_key=True),
        sa.Column("currency", sa.String(3), primary_key=True),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("effective_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "products",
        sa.Column("sku", sa.String(64), primary_key=True),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.Column("title", sa.String(500), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("attributes", sa.JSON(), nullable=False),
    )


def downgrade() -> None:
    for name in ("products", "prices", "return_lines", "returns", "shipment_lines", "shipments"):
        op.drop_table(name)
    op.drop_table("payment_operations")
    op.drop_table("payments")
    op.drop_index("ix_order_lines_sku_status", table_name="order_lines")
    with op.batch_alter_table("order_lines") as table:
        for column in ("return_requested", "delivered", "shipped"):
            table.drop_column(column)
    with op.batch_alter_table("stock_levels") as table:
        table.drop_column("last_sequence")
        table.drop_column("return_pending")
