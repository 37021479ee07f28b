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
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.types import UserDefinedType

from shared_domain.admin import define_audit_table
from shared_domain.inbox import define_inbox_table
from shared_domain.outbox import define_outbox_table

metadata = MetaData()


class Xid8(UserDefinedType[int]):
    """PostgreSQL's 64-bit transaction id."""

    cache_ok = True

    def get_col_spec(self, **kw: object) -> str:
        return "xid8"


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
    Column("correlation_id", String(100), nullable=False, server_default=""),
    # The earliest deadline of the command in flight; NULL when nothing is awaited.
    Column("deadline_at", DateTime(timezone=True), nullable=True),
    # The saga's trace (W3C traceparent/tracestate), for work no message of it starts.
    Column("trace_context", JSONB, nullable=True),
    Index("ix_sagas_status_created", "status", "created_at"),
    # The console's saga list: newest first, by customer, by the step a saga is at.
    Index("ix_sagas_created_at", "created_at"),
    Index("ix_sagas_customer_created", text("(order_data ->> 'customer_id')"), "created_at"),
    Index(
        "ix_sagas_step_created",
        "current_step",
        "created_at",
        postgresql_where=text("current_step IS NOT NULL"),
    ),
    Index(
        "ix_sagas_deadline_at",
        "deadline_at",
        postgresql_where=text("deadline_at IS NOT NULL"),
    ),
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
    # The message the line is about, and what caused it (NULL where there is none).
    Column("message_id", UUID(as_uuid=True), nullable=True),
    Column("causation_id", UUID(as_uuid=True), nullable=True),
    # The saga's status as this transition was saved (NULL on rows older than it).
    Column("saga_status", String(20), nullable=True),
    # The writing transaction: with `id`, the row's place in the live stream, which
    # hands a row out only once every older transaction has ended (see
    # saga_orchestrator.stream).
    Column("txid", Xid8, nullable=False, server_default=text("pg_current_xact_id()")),
    Index("ix_saga_history_position", "txid", "id"),
)

admin_audit = define_audit_table(metadata)

outbox = define_outbox_table(metadata)
inbox = define_inbox_table(metadata)
