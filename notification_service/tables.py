from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, Text, UniqueConstraint
from sqlalchemy.dialects.postgresql import UUID

from shared_domain.admin import define_audit_table
from shared_domain.failure_rates import define_failure_rates_table
from shared_domain.inbox import define_inbox_table
from shared_domain.outbox import define_outbox_table

metadata = MetaData()

notifications = Table(
    "notifications",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("order_id", UUID(as_uuid=True), nullable=False, index=True),
    Column("customer_id", UUID(as_uuid=True), nullable=False),
    Column("kind", String(30), nullable=False),
    Column("channel", String(20), nullable=False),
    Column("subject", Text, nullable=False),
    Column("status", String(20), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("error", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("saga_id", UUID(as_uuid=True), nullable=True),
    UniqueConstraint("order_id", "kind", name="uq_notifications_order_kind"),
)

outbox = define_outbox_table(metadata)
inbox = define_inbox_table(metadata)
admin_audit = define_audit_table(metadata)
failure_rates = define_failure_rates_table(metadata)
