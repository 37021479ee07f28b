"""Connections to PostgreSQL: a single one from the settings, or one borrowed from the
writers' pool."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import asyncpg

from shared_domain.retry import is_outage
from shared_domain.settings import ServiceSettings


async def connect(
    settings: ServiceSettings, database: str, *, connect_timeout: float
) -> asyncpg.Connection:
    """One connection outside any pool (start-up checks, creating a database)."""
    return await asyncpg.connect(
        host=settings.db_host,
        port=settings.db_port,
        user=settings.db_user,
        password=settings.db_password,
        database=database,
        timeout=connect_timeout,
    )


def discard_if_broken(conn: asyncpg.Connection, exc: BaseException | None) -> None:
    """Close a connection that failed at the connection level instead of handing it back.
    The pool skips asyncpg's reset query on release (a round trip per use), so nothing
    else would notice a connection the database dropped in the middle of a reply."""
    if exc is not None and is_outage(exc):
        terminate(conn)


def terminate(conn: asyncpg.Connection) -> None:
    """Close the connection at once. A connection whose socket already closed has been
    handed back to the pool by asyncpg itself, and then there is nothing left to do."""
    with contextlib.suppress(asyncpg.InterfaceError):
        conn.terminate()


@contextlib.asynccontextmanager
async def connection(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    conn = await pool.acquire()
    try:
        yield conn
    except BaseException as exc:
        discard_if_broken(conn, exc)
        raise
    finally:
        await pool.release(conn)
