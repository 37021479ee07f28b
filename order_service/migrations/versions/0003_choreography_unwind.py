"""choreography: when the order service unwound a saga that had no outcome in time

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 23:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("orders", sa.Column("unwound_at", sa.DateTime(timezone=True), nullable=True))
    # what the deadline watcher looks for: the open orders, oldest first
    op.create_index(
        "ix_orders_open_created",
        "orders",
        ["created_at"],
        postgresql_where=sa.text("status IN ('pending', 'processing')"),
    )


def downgrade() -> None:
    op.drop_index("ix_orders_open_created", table_name="orders")
    op.drop_column("orders", "unwound_at")
