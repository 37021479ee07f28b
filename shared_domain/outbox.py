"""Transactional outbox.

A handler writes its outgoing messages into the `outbox` table in the same transaction
as its state change. After the commit the relay publishes them at once (the fast path)
and hands their ids to a cleaner that deletes published rows in batches, in a
transaction of its own, up to 100 ms later: one DELETE for many messages instead of
a second commit per message. Each row carries `available_at`: the moment the background
sweep may take it. Fresh rows get a short grace period so the sweep does not race the
fast path; delayed messages (scheduled retries) simply get a later `available_at`. The
sweep locks rows with `FOR UPDATE SKIP LOCKED`, so any number of replicas can sweep at
once without publishing a row twice.

If the process dies after publishing but before the cleaner's DELETE commits, the sweep
publishes those rows again; consumers drop the repeats by message id (the inbox).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import asyncpg
from sqlalchemy import Column, DateTime, Index, Integer, LargeBinary, MetaData, String, Table
from sqlalchemy.dialects.postgresql import JSONB, UUID

from shared_domain.contracts import Envelope, MessageType, exchange_for
from shared_domain.messaging.broker import Broker, OutgoingMessage
from shared_domain.pg import connection

if TYPE_CHECKING:
    from shared_domain.db import Connection

log = logging.getLogger(__name__)


def define_outbox_table(metadata: MetaData) -> Table:
    return Table(
        "outbox",
        metadata,
        Column("id", UUID(as_uuid=True), primary_key=True),
        Column("exchange", String(100), nullable=False),
        Column("routing_key", String(100), nullable=False),
        Column("message_type", String(100), nullable=False),
        Column("correlation_id", String(100), nullable=True),
        Column("body", LargeBinary, nullable=False),
        Column("headers", JSONB, nullable=False, server_default="{}"),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("available_at", DateTime(timezone=True), nullable=False),
        Column("attempts", Integer, nullable=False, server_default="0"),
        Index("ix_outbox_available_at", "available_at"),
    )


@dataclass(frozen=True)
class StagedMessage:
    message: OutgoingMessage
    available_at: datetime
    delayed: bool


def stage(envelope: Envelope, now: datetime, grace: float, delay: float = 0.0) -> StagedMessage:
    message_type = MessageType(envelope.type)
    message = OutgoingMessage(
        message_id=str(envelope.message_id),
        exchange=exchange_for(message_type),
        routing_key=message_type.value,
        body=envelope.model_dump_json().encode(),
        message_type=message_type.value,
        correlation_id=envelope.correlation_id,
    )
    available_at = now + timedelta(seconds=delay if delay > 0 else grace)
    return StagedMessage(message, available_at, delayed=delay > 0)


# A re-sent command keeps its message id: if the first send is still waiting in the
# outbox, that row already covers it.
_INSERT = (
    "INSERT INTO outbox (id, exchange, routing_key, message_type, correlation_id, body, "
    "headers, created_at, available_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) "
    "ON CONFLICT (id) DO NOTHING"
)
_INSERT_MANY = (
    "INSERT INTO outbox (id, exchange, routing_key, message_type, correlation_id, body, "
    "headers, created_at, available_at) "
    "SELECT m.id, m.exchange, m.routing_key, m.message_type, m.correlation_id, m.body, "
    "m.headers, $8, m.available_at FROM unnest($1::uuid[], $2::text[], $3::text[], "
    "$4::text[], $5::text[], $6::bytea[], $7::jsonb[], $9::timestamptz[]) "
    "AS m(id, exchange, routing_key, message_type, correlation_id, body, headers, "
    "available_at) ON CONFLICT (id) DO NOTHING"
)
_SWEEP = (
    "SELECT id, exchange, routing_key, message_type, correlation_id, body, headers "
    "FROM outbox WHERE available_at <= now() ORDER BY available_at LIMIT $1 "
    "FOR UPDATE SKIP LOCKED"
)
_DELETE = "DELETE FROM outbox WHERE id = ANY($1::uuid[])"


def _row(staged: StagedMessage, now: datetime) -> tuple[object, ...]:
    m = staged.message
    return (
        m.message_id,
        m.exchange,
        m.routing_key,
        m.message_type,
        m.correlation_id,
        m.body,
        dict(m.headers),
        now,
        staged.available_at,
    )


async def insert_staged(conn: Connection, staged: list[StagedMessage], now: datetime) -> None:
    """Write staged messages into the outbox, in the caller's transaction: one statement
    however many there are (several as arrays, unnested)."""
    if len(staged) == 1:
        await conn.execute(_INSERT, *_row(staged[0], now))
        return
    m = [s.message for s in staged]
    await conn.execute(
        _INSERT_MANY,
        [x.message_id for x in m],
        [x.exchange for x in m],
        [x.routing_key for x in m],
        [x.message_type for x in m],
        [x.correlation_id for x in m],
        [x.body for x in m],
        [dict(x.headers) for x in m],
        now,
        [s.available_at for s in staged],
    )


class OutboxRelay:
    def __init__(
        self,
        pool: asyncpg.Pool,
        broker: Broker,
        *,
        sweep_interval: float,
        batch_size: int = 200,
        clean_delay: float = 0.1,
    ) -> None:
        self._pool = pool
        self._broker = broker
        self._interval = sweep_interval
        self._batch = batch_size
        self._clean_delay = clean_delay
        self._published: set[str] = set()  # published, row not deleted yet
        self._wake_cleaner = asyncio.Event()

    async def publish_committed(self, staged: list[StagedMessage]) -> None:
        """Fast path, right after the commit. On any failure the rows stay for the sweep."""
        now_ready = [s.message for s in staged if not s.delayed]
        if not now_ready:
            return
        try:
            await self._broker.publish_many(now_ready)
        except Exception as exc:  # the sweep will publish what is left
            log.warning(
                "outbox fast path failed, leaving %d message(s) to the sweep: %s",
                len(now_ready),
                exc,
            )
            return
        self._published.update(m.message_id for m in now_ready)
        self._wake_cleaner.set()

    async def delete_published(self) -> int:
        """Delete the rows of every message published so far, in one transaction."""
        if not self._published:
            return 0
        ids, self._published = list(self._published), set()
        try:
            async with connection(self._pool) as conn:
                await conn.execute(_DELETE, ids)
        except BaseException:
            self._published.update(ids)  # try again next time (or the sweep re-sends)
            raise
        return len(ids)

    async def sweep_once(self) -> int:
        async with connection(self._pool) as conn, conn.transaction():
            rows = await conn.fetch(_SWEEP, self._batch)
            if not rows:
                return 0
            # Rows the fast path published and the cleaner has not reached yet go
            # without being sent again.
            messages = [
                OutgoingMessage(
                    message_id=str(r["id"]),
                    exchange=r["exchange"],
                    routing_key=r["routing_key"],
                    body=r["body"],
                    message_type=r["message_type"],
                    correlation_id=r["correlation_id"],
                    headers=r["headers"] or {},
                )
                for r in rows
                if str(r["id"]) not in self._published
            ]
            await self._broker.publish_many(messages)
            await conn.execute(_DELETE, [r["id"] for r in rows])
        if messages:
            log.info("outbox sweep published %d message(s)", len(messages))
        return len(messages)

    async def run(self, stop: asyncio.Event) -> None:
        """The sweep and the cleaner, until `stop`; then a last clean-up."""
        await asyncio.gather(self._sweep_loop(stop), self._clean_loop(stop))

    async def _sweep_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                published = await self.sweep_once()
            except Exception as exc:
                log.warning("outbox sweep failed (will retry): %s", exc)
                published = 0
            if published < self._batch:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self._interval)

    async def _clean_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake_cleaner.wait(), timeout=self._interval)
            self._wake_cleaner.clear()
            await asyncio.sleep(self._clean_delay)  # let a few more gather
            try:
                await self.delete_published()
            except Exception as exc:
                log.warning("deleting published outbox rows failed (will retry): %s", exc)
        with contextlib.suppress(Exception):
            await self.delete_published()
