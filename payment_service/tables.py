from sqlalchemy import Column, DateTime, MetaData, Numeric, String, Table, Text
from sqlalchemy.dialects.postgresql import UUID

from shared_domain.admin import define_audit_table
from shared_domain.failure_rates import define_failure_rates_table
from shared_domain.inbox import define_inbox_table
from shared_domain.outbox import define_outbox_table

metadata = MetaData()

payments = Table(
    "payments",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("order_id", UUID(as_uuid=True), nullable=False, unique=True),
    Column("customer_id", UUID(as_uuid=True), nullable=True),
    Column("amount", Numeric(14, 2), nullable=False),
    Column("status", String(20), nullable=False),
    Column("failure_reason", Text, nullable=True),
    Column("provider_reference", String(100), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("saga_id", UUID(as_uuid=True), nullable=True),
)

outbox = define_outbox_table(metadata)
inbox = define_inbox_table(metadata)
admin_audit = define_audit_table(metadata)
failure_rates = define_failure_rates_table(metadata)
