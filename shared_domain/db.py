"""Database engine and the unit of work every handler runs in."""

from __future__ import annotations

import functools
from types import TracebackType
from typing import Self

from sqlalchemy import Table
from sqlalchemy.dialects.postgresql import Insert, insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from shared_domain import inbox
from shared_domain.contracts import Envelope, utcnow
from shared_domain.outbox import OutboxRelay, StagedMessage, outbox_row, stage
from shared_domain.settings import ServiceSettings


def create_engine(settings: ServiceSettings) -> AsyncEngine:
    return create_async_engine(
        settings.database_url(),
        # A fixed pool: overflow connections would be opened and closed again under
        # every burst. No pre-ping (a round trip per checkout): a connection that died
        # fails its statement as an outage, which is retried (messages) or answered with
        # a 503 (requests), and the pool replaces it.
        pool_size=settings.db_pool_size,
        max_overflow=0,
        pool_pre_ping=False,
        pool_recycle=1800,
    )


@functools.cache
def _outbox_insert(table: Table) -> Insert:
    return insert(table).on_conflict_do_nothing(index_elements=["id"])


class UnitOfWork:
    """One database transaction; the messages it emits go to the outbox in the same
    transaction and are handed to the relay only after the commit succeeds."""

    def __init__(
        self,
        engine: AsyncEngine,
        relay: OutboxRelay | None,
        outbox_table: Table,
        inbox_table: Table,
        outbox_grace: float,
    ) -> None:
        self._engine = engine
        self._relay = relay
        self._outbox = outbox_table
        self._inbox = inbox_table
        self._grace = outbox_grace
        self._conn: AsyncConnection | None = None
        self._staged: list[StagedMessage] = []
        self.committed = False

    async def __aenter__(self) -> Self:
        self._conn = await self._engine.connect()
        await self._conn.begin()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._conn is not None
        try:
            if not self.committed:
                await self._conn.rollback()
        finally:
            await self._conn.close()
            self._conn = None

    @property
    def conn(self) -> AsyncConnection:
        if self._conn is None:
            raise RuntimeError("unit of work is not open")
        return self._conn

    async def claim(self, envelope: Envelope) -> bool:
        """Record the incoming message as processed; False if it already was."""
        return await inbox.claim(self.conn, self._inbox, envelope.message_id, envelope.type)

    def emit(self, envelope: Envelope, *, delay: float = 0.0) -> None:
        self._staged.append(stage(envelope, utcnow(), self._grace, delay))

    async def commit(self) -> None:
        if self._staged:
            now = utcnow()
            # A re-sent command keeps its message id: if the first send is still waiting
            # in the outbox, that row already covers it.
            await self.conn.execute(
                _outbox_insert(self._outbox), [outbox_row(s, now) for s in self._staged]
            )
        await self.conn.commit()
        self.committed = True
        if self._relay is not None and self._staged:
            await self._relay.publish_committed(self._staged)
