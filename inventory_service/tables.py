from sqlalchemy import CheckConstraint, Column, DateTime, Integer, MetaData, Numeric, String, Table
from sqlalchemy.dialects.postgresql import JSONB, UUID

from shared_domain.admin import define_audit_table
from shared_domain.inbox import define_inbox_table
from shared_domain.outbox import define_outbox_table

metadata = MetaData()

products = Table(
    "products",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("price", Numeric(14, 2), nullable=False),
    Column("stock", Integer, nullable=False),
    Column("reserved", Integer, nullable=False, server_default="0"),
    CheckConstraint("stock >= 0", name="ck_products_stock_non_negative"),
    CheckConstraint("reserved >= 0", name="ck_products_reserved_non_negative"),
)

reservations = Table(
    "reservations",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("order_id", UUID(as_uuid=True), nullable=False, unique=True),
    Column("status", String(20), nullable=False),
    Column("items", JSONB, nullable=False),
    Column("failure_reason", String(50), nullable=True),
    Column("failure_detail", JSONB, nullable=False, server_default="{}"),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("customer_id", UUID(as_uuid=True), nullable=True),
    Column("saga_id", UUID(as_uuid=True), nullable=True),
)

outbox = define_outbox_table(metadata)
inbox = define_inbox_table(metadata)
admin_audit = define_audit_table(metadata)
