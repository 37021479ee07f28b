"""admin audit and failure rates

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 12:40:00.000000
"""

from collections.abc import Sequence

from shared_domain.migrations import (
    create_audit_table,
    create_failure_rates_table,
    drop_audit_table,
    drop_failure_rates_table,
)

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    create_audit_table()
    create_failure_rates_table()


def downgrade() -> None:
    drop_failure_rates_table()
    drop_audit_table()
