"""The SQL schema as SQLAlchemy Core tables; Alembic migrations create and evolve it."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

#: One row per applied event, written in the same transaction as the event's effects.
processed_events = Table(
    "processed_events",
    metadata,
    Column("contract", String(100), primary_key=True),
    Column("dedup_key", String(200), primary_key=True),
    Column("flow", String(50), nullable=False),
    Column("message_id", String(200), nullable=False),
    Column("version", Integer, nullable=False),
    Column("processed_at", DateTime(timezone=True), nullable=False),
)

orders = Table(
    "orders",
    metadata,
    Column("order_id", String(64), primary_key=True),
    Column("channel", String(50), nullable=False),
    Column("customer_id", String(64)),
    Column("currency", String(3), nullable=False),
    Column("total_minor", BigInteger, nullable=False),
    Column("tax_exempt", Integer, nullable=False),
    Column("status", String(30), nullable=False),
    Column("placed_at", DateTime(timezone=True), nullable=False),
)

order_lines = Table(
    "order_lines",
    metadata,
    Column("order_id", String(64), ForeignKey("orders.order_id"), primary_key=True),
    Column("line_id", String(64), primary_key=True),
    Column("sku", String(64), nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("unit_price_minor", BigInteger, nullable=False),
    Column("status", String(30), nullable=False),
    Column("location", String(64)),
)

stock_levels = Table(
    "stock_levels",
    metadata,
    Column("sku", String(64), primary_key=True),
    Column("location", String(64), primary_key=True),
    Column("on_hand", Integer, nullable=False),
    Column("reserved", Integer, nullable=False, default=0),
    Column("quarantined", Integer, nullable=False, default=0),
)

#: Every dead letter drained from the broker, kept until an operator resolves or purges it.
dead_letters = Table(
    "dead_letters",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("dead_letter_key", String(100), nullable=False, unique=True),
    Column("flow", String(50), nullable=False),
    Column("queue", String(200), nullable=False),
    Column("stage", String(20), nullable=False),
    Column("contract", String(200)),
    Column("version", Integer),
    Column("message_id", String(200)),
    Column("correlation_id", String(200)),
    Column("producer", String(200)),
    Column("dedup_key", String(200)),
    Column("business_keys", JSON, nullable=False),
    Column("error_type", String(200), nullable=False),
    Column("error_message", Text, nullable=False),
    Column("traceback", Text),
    Column("field_paths", JSON, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("first_failed_at", DateTime(timezone=True), nullable=False),
    Column("last_failed_at", DateTime(timezone=True), nullable=False),
    Column("archived_at", DateTime(timezone=True), nullable=False),
    Column("fingerprint", String(40), nullable=False),
    Column("status", String(20), nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("headers", JSON, nullable=False),
    Index("ix_dead_letters_status_flow", "status", "flow"),
    Index("ix_dead_letters_fingerprint", "fingerprint"),
    Index("ix_dead_letters_message_id", "message_id"),
)

#: The audit trail of a dead letter: archived, replayed, discarded... who, when, why.
dead_letter_events = Table(
    "dead_letter_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("dead_letter_id", Integer, ForeignKey("dead_letters.id", ondelete="CASCADE"), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("action", String(50), nullable=False),
    Column("reason", Text),
    Column("detail", JSON, nullable=False),
    UniqueConstraint("dead_letter_id", "id"),
    Index("ix_dead_letter_events_dead_letter_id", "dead_letter_id"),
)
