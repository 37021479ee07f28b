from sqlalchemy import Column, DateTime, MetaData, String, Table, Text
from sqlalchemy.dialects.postgresql import JSONB, UUID

from shared_domain.admin import define_audit_table
from shared_domain.failure_rates import define_failure_rates_table
from shared_domain.inbox import define_inbox_table
from shared_domain.outbox import define_outbox_table

metadata = MetaData()

shipments = Table(
    "shipments",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("order_id", UUID(as_uuid=True), nullable=False, unique=True),
    Column("status", String(20), nullable=False),
    Column("carrier", String(50), nullable=True),
    Column("tracking_number", String(50), nullable=True),
    Column("shipping_address", JSONB, nullable=False),
    Column("failure_reason", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("customer_id", UUID(as_uuid=True), nullable=True),
    Column("saga_id", UUID(as_uuid=True), nullable=True),
)

outbox = define_outbox_table(metadata)
inbox = define_inbox_table(metadata)
admin_audit = define_audit_table(metadata)
failure_rates = define_failure_rates_table(metadata)
