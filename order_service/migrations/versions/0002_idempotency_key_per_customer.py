"""an Idempotency-Key is the customer's own

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 17:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_constraint("orders_idempotency_key_key", "orders", type_="unique")
    op.create_index(
        "ux_orders_customer_idempotency_key",
        "orders",
        ["customer_id", "idempotency_key"],
        unique=True,
    )
    # what the retention sweep looks for: keys older than IDEMPOTENCY_KEY_RETENTION
    op.create_index(
        "ix_orders_idempotency_created",
        "orders",
        ["created_at"],
        postgresql_where=sa.text("idempotency_key IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_orders_idempotency_created", table_name="orders")
    op.drop_index("ux_orders_customer_idempotency_key", table_name="orders")
    op.create_unique_constraint("orders_idempotency_key_key", "orders", ["idempotency_key"])
