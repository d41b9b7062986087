"""The SQL schema as SQLAlchemy Core tables; Alembic migrations create and evolve it.

Over 300 lines on purpose: one schema read in one place (the books', the archive's and the outbox's tables),
as Alembic's autogenerate and a reviewer compare it with the migrations.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
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
    Column("shipped", Integer, nullable=False, default=0),
    Column("delivered", Integer, nullable=False, default=0),
    Column("return_requested", Integer, nullable=False, default=0),
    Index("ix_order_lines_sku_status", "sku", "status"),
)

stock_levels = Table(
    "stock_levels",
    metadata,
    Column("sku", String(64), primary_key=True),
    Column("location", String(64), primary_key=True),
    Column("on_hand", Integer, nullable=False),
    Column("reserved", Integer, nullable=False, default=0),
    Column("quarantined", Integer, nullable=False, default=0),
    Column("return_pending", Integer, nullable=False, default=0),
    #: The warehouse's sequence number of the last inventory event applied here.
    Column("last_sequence", BigInteger),
)

payments = Table(
    "payments",
    metadata,
    Column("payment_id", String(64), primary_key=True),
    Column("order_id", String(64), nullable=False, index=True),
    Column("currency", String(3), nullable=False),
    Column("authorized_minor", BigInteger, nullable=False),
    Column("captured_minor", BigInteger, nullable=False),
    Column("refunded_minor", BigInteger, nullable=False),
    Column("status", String(20), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

#: Each capture and refund applied to a payment: the ledger its totals add up from.
payment_operations = Table(
    "payment_operations",
    metadata,
    Column("kind", String(10), primary_key=True),
    Column("operation_id", String(64), primary_key=True),
    Column("payment_id", String(64), ForeignKey("payments.payment_id"), nullable=False, index=True),
    Column("amount_minor", BigInteger, nullable=False),
    Column("applied_at", DateTime(timezone=True), nullable=False),
)

shipments = Table(
    "shipments",
    metadata,
    Column("shipment_id", String(64), primary_key=True),
    Column("order_id", String(64), ForeignKey("orders.order_id"), nullable=False, index=True),
    Column("location", String(64), nullable=False),
    Column("carrier", String(500), nullable=False),
    Column("tracking_number", String(500)),
    Column("status", String(20), nullable=False),
    Column("dispatched_at", DateTime(timezone=True), nullable=False),
    Column("delivered_at", DateTime(timezone=True)),
)

shipment_lines = Table(
    "shipment_lines",
    metadata,
    Column("shipment_id", String(64), ForeignKey("shipments.shipment_id"), primary_key=True),
    Column("line_id", String(64), primary_key=True),
    Column("quantity", Integer, nullable=False),
)

returns = Table(
    "returns",
    metadata,
    Column("rma_id", String(64), primary_key=True),
    Column("order_id", String(64), ForeignKey("orders.order_id"), nullable=False, index=True),
    Column("location", String(64), nullable=False),
    Column("status", String(30), nullable=False),
    Column("refunded_minor", BigInteger, nullable=False),
    Column("receipts", JSON, nullable=False),
    Column("requested_at", DateTime(timezone=True), nullable=False),
)

return_lines = Table(
    "return_lines",
    metadata,
    Column("rma_id", String(64), ForeignKey("returns.rma_id"), primary_key=True),
    Column("line_id", String(64), primary_key=True),
    Column("sku", String(64), nullable=False),
    Column("requested", Integer, nullable=False),
    Column("received", Integer, nullable=False),
    Column("sellable", Integer, nullable=False),
    Column("damaged", Integer, nullable=False),
)

prices = Table(
    "prices",
    metadata,
    Column("sku", String(64), primary_key=True),
    Column("currency", String(3), primary_key=True),
    Column("amount_minor", BigInteger, nullable=False),
    Column("effective_at", DateTime(timezone=True), nullable=False),
)

products = Table(
    "products",
    metadata,
    Column("sku", String(64), primary_key=True),
    Column("revision", BigInteger, nullable=False),
    Column("title", String(500), nullable=False),
    Column("description", Text, nullable=False),
    Column("attributes", JSON, nullable=False),
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
    #: The dead letter this one is a replayed copy of, and the action that replayed it (no foreign keys:
    #: a purged original leaves the number, and the drain must never fail on a stale header).
    Column("replay_of", Integer),
    Column("replay_action_id", Integer),
    #: When it was resolved or discarded: `dlq purge --resolved-before` reads it.
    Column("closed_at", DateTime(timezone=True)),
    #: The records list and a group's page: equality columns, then the id their cursor walks (0005).
    Index("ix_dead_letters_status_id", "status", "id"),
    Index("ix_dead_letters_status_flow_id", "status", "flow", "id"),
    Index("ix_dead_letters_fingerprint_status_id", "fingerprint", "status", "id"),
    Index("ix_dead_letters_message_id", "message_id"),
    Index("ix_dead_letters_replay_of", "replay_of"),
    Index("ix_dead_letters_archived_at", "archived_at"),
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

#: An operator's write on the archive (replay, repair, discard, restore, purge, export): who, when, why,
#: on which selection, with which options, and how it ended.
dead_letter_actions = Table(
    "dead_letter_actions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(20), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("reason", Text),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    #: running | finished | stopped | interrupted
    Column("status", String(20), nullable=False),
    #: The frozen set of a replay: its filter (JSON) and cutoff (archived at or before).
    Column("selection", JSON, nullable=False),
    Column("cutoff", DateTime(timezone=True)),
    Column("options", JSON, nullable=False),
    Column("counts", JSON, nullable=False),
    Column("note", Text),
    #: The process running it and when it last said so: a resume takes over only a silent one.
    Column("owner", String(64)),
    Column("heartbeat_at", DateTime(timezone=True)),
    Index("ix_dead_letter_actions_started_at", "started_at"),
)

#: One dead letter sent by one replay or repair action, and what became of it.
dead_letter_replays = Table(
    "dead_letter_replays",
    metadata,
    Column("action_id", Integer, ForeignKey("dead_letter_actions.id"), primary_key=True),
    Column("dead_letter_id", Integer, ForeignKey("dead_letters.id", ondelete="CASCADE"), primary_key=True),
    Column("claimed_at", DateTime(timezone=True), nullable=False),
    #: Set once the broker confirmed the copy; a claim without it after a crash is "in doubt".
    Column("published_at", DateTime(timezone=True)),
    #: pending | applied | duplicate | failed_again | not_published
    Column("outcome", String(20), nullable=False),
    Column("outcome_at", DateTime(timezone=True)),
    #: The dead letter a copy that failed again became.
    Column("new_dead_letter_id", Integer),
    #: The edited body a repair sent (None: the original body was sent).
    Column("body", LargeBinary),
    Column("note", Text),
    Index("ix_dead_letter_replays_dead_letter_id", "dead_letter_id"),
)

#: Business keys of each dead letter, one row per key, so "everything stuck for order 1234" is one
#: indexed lookup on SQLite and PostgreSQL alike (business_keys itself is a JSON column).
dead_letter_keys = Table(
    "dead_letter_keys",
    metadata,
    Column("dead_letter_id", Integer, ForeignKey("dead_letters.id", ondelete="CASCADE"), primary_key=True),
    Column("name", String(100), primary_key=True),
    Column("value", String(200), primary_key=True),
    Index("ix_dead_letter_keys_name_value", "name", "value"),
)

#: Events parked behind a dead letter they depend on (a capture whose order.created is dead-lettered):
#: kept whole, released in `id` order when that record is applied, dead-lettered when they wait too long.
#: `parent_id` has no foreign key, like `replay_of`: a purged parent leaves the number.
parked_events = Table(
    "parked_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("parent_id", Integer, nullable=False),
    Column("flow", String(50), nullable=False),
    Column("contract", String(200), nullable=False),
    Column("message_id", String(200), nullable=False),
    Column("dedup_key", String(200), nullable=False),
    Column("business_keys", JSON, nullable=False),
    #: The body and headers as the broker delivered them: a release publishes exactly these again.
    Column("body", LargeBinary, nullable=False),
    Column("headers", JSON, nullable=False),
    Column("parked_at", DateTime(timezone=True), nullable=False),
    Column("status", String(20), nullable=False),
    Column("closed_at", DateTime(timezone=True)),
    Index("ix_parked_events_parent_status", "parent_id", "status"),
    Index("ix_parked_events_status_parked_at", "status", "parked_at"),
)

#: The transactional outbox: one row per request a handler asked of a downstream system, written in the
#: effect's own transaction and sent after commit by the delivery relay (workers/delivery/).
deliveries = Table(
    "deliveries",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("system", String(32), nullable=False),
    Column("method", String(8), nullable=False),
    Column("path", String(1000), nullable=False),
    Column("body", JSON, nullable=False),
    Column("idempotency_key", String(600), nullable=False),
    #: Deliveries of one key go out in commit order; a failing or dead-lettered head holds back only its key.
    Column("ordering_key", String(300), nullable=False),
    #: Set for requests that carry only the latest value (availability, prices): a newer one replaces it.
    Column("supersede_key", String(300), nullable=True),
    # The event that caused it.
    Column("flow", String(50), nullable=False),
    Column("contract", String(100), nullable=False),
    Column("version", Integer, nullable=False),
    Column("message_id", String(200), nullable=False),
    Column("dedup_key", String(200), nullable=False),
    Column("business_keys", JSON, nullable=False),
    # Where it stands (workers/store/outbox/status.py).
    Column("status", String(20), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("throttles", Integer, nullable=False, default=0),
    Column("first_failed_at", DateTime(timezone=True), nullable=True),
    Column("last_error", Text, nullable=True),
    Column("lease_owner", String(100), nullable=True),
    Column("lease_expires_at", DateTime(timezone=True), nullable=True),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    Column("dead_letter_id", Integer, nullable=True),
    Index("ix_deliveries_due", "system", "status", "next_attempt_at"),
    Index("ix_deliveries_ordering", "ordering_key", "id"),
    Index("ix_deliveries_supersede", "supersede_key", "status"),
    Index("ix_deliveries_message", "message_id"),
    Index("ix_deliveries_finished", "status", "finished_at"),
)

#: One row per downstream system: the operator's pause and the fleet-wide circuit breaker, seen by every relay.
downstream_controls = Table(
    "downstream_controls",
    metadata,
    Column("system", String(32), primary_key=True),
    Column("paused", Boolean, nullable=False, default=False),
    Column("paused_by", String(200), nullable=True),
    Column("pause_reason", Text, nullable=True),
    Column("paused_since", DateTime(timezone=True), nullable=True),
    Column("paused_until", DateTime(timezone=True), nullable=True),
    Column("breaker", String(20), nullable=False, default="closed"),
    Column("consecutive_failures", Integer, nullable=False, default=0),
    Column("breaker_opened_at", DateTime(timezone=True), nullable=True),
    Column("breaker_probe_at", DateTime(timezone=True), nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=True),
)
