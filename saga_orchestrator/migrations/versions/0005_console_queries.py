"""the console's queries: message ids in the history, indexes for the saga list

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 13:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("saga_history", sa.Column("message_id", postgresql.UUID(), nullable=True))
    op.add_column("saga_history", sa.Column("causation_id", postgresql.UUID(), nullable=True))
    op.create_index("ix_sagas_created_at", "sagas", ["created_at"], unique=False)
    op.create_index(
        "ix_sagas_customer_created",
        "sagas",
        [sa.text("(order_data ->> 'customer_id')"), "created_at"],
        unique=False,
    )
    op.create_index(
        "ix_sagas_step_created",
        "sagas",
        ["current_step", "created_at"],
        unique=False,
        postgresql_where=sa.text("current_step IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_sagas_step_created", table_name="sagas")
    op.drop_index("ix_sagas_customer_created", table_name="sagas")
    op.drop_index("ix_sagas_created_at", table_name="sagas")
    op.drop_column("saga_history", "causation_id")
    op.drop_column("saga_history", "message_id")
