"""notifications: saga_id, who the record belongs to

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 19:20:00.000000
"""

from collections.abc import Sequence

from shared_domain.migrations import add_owner_columns, drop_owner_columns

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    add_owner_columns("notifications", "saga_id")


def downgrade() -> None:
    drop_owner_columns("notifications", "saga_id")
