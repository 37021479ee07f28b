"""Alembic glue shared by every service's `migrations/env.py`, and the programmatic
upgrade each service runs before it serves."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from alembic import command, context
from alembic.config import Config
from sqlalchemy import MetaData, pool, text
from sqlalchemy.engine import URL, Connection
from sqlalchemy.ext.asyncio import create_async_engine

from shared_domain.settings import ServiceSettings

# Replicas starting together serialise on this lock instead of racing to migrate.
_MIGRATION_LOCK = 7_420_001


def upgrade(package: str, url: URL) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", f"{package}:migrations")
    cfg.attributes["url"] = url
    command.upgrade(cfg, "head")


def run_env(metadata: MetaData, settings_factory: Callable[[], ServiceSettings]) -> None:
    """Body of every `env.py`: online migrations over asyncpg, under an advisory lock."""
    url = context.config.attributes.get("url") or settings_factory().database_url()

    def do_run(connection: Connection) -> None:
        context.configure(connection=connection, target_metadata=metadata, compare_type=True)
        with context.begin_transaction():
            connection.execute(text(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})"))
            context.run_migrations()

    async def run_async() -> None:
        engine = create_async_engine(url, poolclass=pool.NullPool)
        async with engine.connect() as connection:
            await connection.run_sync(do_run)
        await engine.dispose()

    if context.is_offline_mode():
        context.configure(
            url=url.render_as_string(hide_password=False),
            target_metadata=metadata,
            literal_binds=True,
        )
        with context.begin_transaction():
            context.run_migrations()
    else:
        asyncio.run(run_async())


# ---------------------------------------------------------------- shared tables
# The tables shared_domain defines for several services (shared_domain.admin and
# shared_domain.failure_rates), as each service's migration creates them.


def create_audit_table() -> None:
    from alembic import op
    from sqlalchemy import BigInteger, Column, DateTime, PrimaryKeyConstraint, String, Text

    op.create_table(
        "admin_audit",
        Column("id", BigInteger(), autoincrement=True, nullable=False),
        Column("at", DateTime(timezone=True), nullable=False),
        Column("action", String(length=50), nullable=False),
        Column("target", String(length=200), nullable=False),
        Column("actor", String(length=200), nullable=False),
        Column("outcome", String(length=20), nullable=False),
        Column("detail", Text(), nullable=True),
        Column("request_id", String(length=100), nullable=True),
        PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_admin_audit_at", "admin_audit", ["at"], unique=False)


def create_failure_rates_table() -> None:
    from alembic import op
    from sqlalchemy import Column, DateTime, Float, PrimaryKeyConstraint, String

    op.create_table(
        "failure_rates",
        Column("name", String(length=50), nullable=False),
        Column("rate", Float(), nullable=False),
        Column("set_at", DateTime(timezone=True), nullable=False),
        Column("set_by", String(length=200), nullable=False),
        PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "failure_rate_replicas",
        Column("instance", String(length=100), nullable=False),
        Column("seen_at", DateTime(timezone=True), nullable=False),
        PrimaryKeyConstraint("instance"),
    )


def drop_audit_table() -> None:
    from alembic import op

    op.drop_index("ix_admin_audit_at", table_name="admin_audit")
    op.drop_table("admin_audit")


def drop_failure_rates_table() -> None:
    from alembic import op

    op.drop_table("failure_rate_replicas")
    op.drop_table("failure_rates")


def add_owner_columns(table: str, *columns: str) -> None:
    """Who a worker's record belongs to: `customer_id` (so that a customer reads only
    their own) and `saga_id` (so that a command from another saga is refused). Nullable:
    a record made before them, or a tombstone, has none."""
    import sqlalchemy as sa
    from alembic import op
    from sqlalchemy.dialects import postgresql

    for column in columns:
        op.add_column(table, sa.Column(column, postgresql.UUID(as_uuid=True), nullable=True))


def drop_owner_columns(table: str, *columns: str) -> None:
    from alembic import op

    for column in columns:
        op.drop_column(table, column)
