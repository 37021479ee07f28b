from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Index,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID

from shared_domain.inbox import define_inbox_table
from shared_domain.outbox import define_outbox_table

metadata = MetaData()

orders = Table(
    "orders",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("customer_id", UUID(as_uuid=True), nullable=False),
    Column("status", String(20), nullable=False),
    Column("total_amount", Numeric(14, 2), nullable=False),
    Column("items", JSONB, nullable=False),
    Column("shipping_address", JSONB, nullable=False),
    Column("saga_id", UUID(as_uuid=True), nullable=False, unique=True),
    Column("failure_reason", Text, nullable=True),
    Column("idempotency_key", String(255), nullable=True),
    Column("request_fingerprint", String(64), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    # choreography: when the saga was unwound for having no outcome in time (0003)
    Column("unwound_at", DateTime(timezone=True), nullable=True),
    Index("ix_orders_customer_created", "customer_id", "created_at"),
    # a key is the customer's own; kept for IDEMPOTENCY_KEY_RETENTION (migration 0002)
    Index("ux_orders_customer_idempotency_key", "customer_id", "idempotency_key", unique=True),
    Index(
        "ix_orders_idempotency_created",
        "created_at",
        postgresql_where=text("idempotency_key IS NOT NULL"),
    ),
    Index(
        "ix_orders_open_created",
        "created_at",
        postgresql_where=text("status IN ('pending', 'processing')"),
    ),
)

order_status_history = Table(
    "order_status_history",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("order_id", UUID(as_uuid=True), ForeignKey("orders.id"), nullable=False, index=True),
    Column("status", String(20), nullable=False),
    Column("reason", Text, nullable=True),
    Column("at", DateTime(timezone=True), nullable=False),
)

outbox = define_outbox_table(metadata)
inbox = define_inbox_table(metadata)
