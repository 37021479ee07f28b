"""saga history: the saga's status and the stream position

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 12:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("saga_history", sa.Column("saga_status", sa.String(length=20), nullable=True))
    # Rows already there take the migration's own transaction id: all of them come
    # before anything written after it.
    op.execute(
        "ALTER TABLE saga_history ADD COLUMN txid xid8 NOT NULL DEFAULT pg_current_xact_id()"
    )
    op.create_index("ix_saga_history_position", "saga_history", ["txid", "id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_saga_history_position", table_name="saga_history")
    op.drop_column("saga_history", "txid")
    op.drop_column("saga_history", "saga_status")
