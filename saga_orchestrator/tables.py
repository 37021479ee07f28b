from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID

from shared_domain.inbox import define_inbox_table
from shared_domain.outbox import define_outbox_table

metadata = MetaData()

sagas = Table(
    "sagas",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("order_id", UUID(as_uuid=True), nullable=False, unique=True),
    Column("status", String(20), nullable=False),
    Column("current_step", String(20), nullable=True),
    Column("failure_reason", Text, nullable=True),
    Column("order_data", JSONB, nullable=False),
    Column("steps", JSONB, nullable=False),
    Column("version", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_sagas_status_created", "status", "created_at"),
)

saga_history = Table(
    "saga_history",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("saga_id", UUID(as_uuid=True), ForeignKey("sagas.id"), nullable=False, index=True),
    Column("step", String(20), nullable=False),
    Column("status", String(30), nullable=False),
    Column("message_type", String(50), nullable=False),
    Column("detail", Text, nullable=True),
    Column("at", DateTime(timezone=True), nullable=False),
)

outbox = define_outbox_table(metadata)
inbox = define_inbox_table(metadata)
