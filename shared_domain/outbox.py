"""Transactional outbox.

A handler writes its outgoing messages into the `outbox` table in the same transaction
as its state change. After the commit the relay publishes them at once (the fast path)
and hands their ids to a cleaner that deletes published rows in batches, in a
transaction of its own, a few milliseconds later: one DELETE for many messages instead of
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
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    delete,
    func,
    select,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.ext.asyncio import AsyncEngine

from shared_domain.contracts import Envelope, MessageType, exchange_for
from shared_domain.messaging.broker import Broker, OutgoingMessage

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


def outbox_row(staged: StagedMessage, now: datetime) -> dict[str, Any]:
    m = staged.message
    return {
        "id": m.message_id,
        "exchange": m.exchange,
        "routing_key": m.routing_key,
        "message_type": m.message_type,
        "correlation_id": m.correlation_id,
        "body": m.body,
        "headers": dict(m.headers),
        "created_at": now,
        "available_at": staged.available_at,
    }


class OutboxRelay:
    def __init__(
        self,
        engine: AsyncEngine,
        broker: Broker,
        table: Table,
        *,
        sweep_interval: float,
        batch_size: int = 200,
        clean_delay: float = 0.02,
    ) -> None:
        self._engine = engine
        self._broker = broker
        self._table = table
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
            async with self._engine.begin() as conn:
                await conn.execute(delete(self._table).where(self._table.c.id.in_(ids)))
        except BaseException:
            self._published.update(ids)  # try again next time (or the sweep re-sends)
            raise
        return len(ids)

    async def sweep_once(self) -> int:
        t = self._table
        async with self._engine.begin() as conn:
            rows = (
                await conn.execute(
                    select(
                        t.c.id,
                        t.c.exchange,
                        t.c.routing_key,
                        t.c.message_type,
                        t.c.correlation_id,
                        t.c.body,
                        t.c.headers,
                    )
                    .where(t.c.available_at <= func.now())
                    .order_by(t.c.available_at)
                    .limit(self._batch)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            if not rows:
                return 0
            # Rows the fast path published and the cleaner has not reached yet go
            # without being sent again.
            messages = [
                OutgoingMessage(
                    message_id=str(r.id),
                    exchange=r.exchange,
                    routing_key=r.routing_key,
                    body=r.body,
                    message_type=r.message_type,
                    correlation_id=r.correlation_id,
                    headers=r.headers or {},
                )
                for r in rows
                if str(r.id) not in self._published
            ]
            await self._broker.publish_many(messages)
            await conn.execute(delete(t).where(t.c.id.in_([r.id for r in rows])))
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
