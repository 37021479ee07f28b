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
