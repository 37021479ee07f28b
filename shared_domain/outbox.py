"""Transactional outbox.

A handler writes its outgoing messages into the `outbox` table in the same transaction
as its state change. After the commit the relay publishes them at once (the fast path)
and hands their ids to a cleaner that deletes published rows in batches, in a
transaction of its own, up to half a second later: one DELETE for many messages instead of
a second commit per message. Each row carries `available_at`: the moment the background
sweep may take it. Fresh rows get a short grace period so the sweep does not race the
fast path; delayed messages (scheduled retries) simply get a later `available_at`. The
sweep locks rows with `FOR UPDATE SKIP LOCKED`, so any number of replicas can sweep at
once without publishing a row twice.

If the process dies after publishing but before the cleaner's DELETE commits, the sweep
publishes those rows again; consumers drop the repeats by message id (the inbox).

Nobody waits on the broker for long: when RabbitMQ blocks the connection (a memory or
disk alarm) the fast path is skipped and the sweep pauses, and a publish the broker has
not confirmed within `publish_wait` seconds is left to finish on its own. The request
or handler that committed goes on (an order is answered 201, a message acked); the row
stays in the outbox until its publish is confirmed, by that publish or by the sweep.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg
import orjson
from sqlalchemy import Column, DateTime, Index, Integer, LargeBinary, MetaData, String, Table
from sqlalchemy.dialects.postgresql import JSONB, UUID

from shared_domain import tracing
from shared_domain.contracts import Envelope, MessageType, exchange_for
from shared_domain.messaging.broker import Broker, OutgoingMessage
from shared_domain.metrics import MESSAGES_PUBLISHED, OUTBOX_BACKLOG, OUTBOX_OLDEST_AGE
from shared_domain.pg import connection

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
    """The message as its outbox row will hold it. Its headers carry the trace context of
    its publish span, so whoever publishes the row, and whenever, it joins its trace."""
    message_type = MessageType(envelope.type)
    exchange = exchange_for(message_type)
    message = OutgoingMessage(
        message_id=str(envelope.message_id),
        exchange=exchange,
        routing_key=message_type.value,
        body=envelope.model_dump_json().encode(),
        message_type=message_type.value,
        correlation_id=envelope.correlation_id,
        headers=tracing.publish_span(envelope, exchange),
    )
    available_at = now + timedelta(seconds=delay if delay > 0 else grace)
    return StagedMessage(message, available_at, delayed=delay > 0)


_COLUMNS = (
    "id, exchange, routing_key, message_type, correlation_id, body, headers, created_at, "
    "available_at"
)


def _hex_text(value: str | None) -> str:
    # Hex digits only: no quoting to get right, whatever the text holds.
    if value is None:
        return "NULL"
    return f"convert_from(decode('{value.encode().hex()}', 'hex'), 'UTF8')"


def _timestamp(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("outbox timestamps are timezone-aware")
    return f"'{value.isoformat()}'::timestamptz"


def insert_and_commit_script(staged: list[StagedMessage], now: datetime) -> str:
    """One simple query that writes staged messages into the outbox and commits: the
    transaction's last two statements in one round trip. A simple query carries no
    parameters, so every value is written in as a literal: texts and the body as hex,
    the id as a UUID, times in ISO form."""
    rows = []
    for s in staged:
        m = s.message
        rows.append(
            f"('{uuid.UUID(m.message_id)}'::uuid, {_hex_text(m.exchange)}, "
            f"{_hex_text(m.routing_key)}, {_hex_text(m.message_type)}, "
            f"{_hex_text(m.correlation_id)}, decode('{m.body.hex()}', 'hex'), "
            f"{_hex_text(orjson.dumps(dict(m.headers)).decode())}::jsonb, "
            f"{_timestamp(now)}, {_timestamp(s.available_at)})"
        )
    return (
        # A re-sent command keeps its message id: if the first send is still waiting in
        # the outbox, that row already covers it.
        f"INSERT INTO outbox ({_COLUMNS}) VALUES {', '.join(rows)} "
        "ON CONFLICT (id) DO NOTHING; COMMIT"
    )


_SWEEP = (
    "SELECT id, exchange, routing_key, message_type, correlation_id, body, headers "
    "FROM outbox WHERE available_at <= now() ORDER BY available_at LIMIT $1 "
    "FOR UPDATE SKIP LOCKED"
)
_DELETE = "DELETE FROM outbox WHERE id = ANY($1::uuid[])"
# The backlog is what the sweep has to publish: rows due and not published yet (the fast
# path failed, their process died, or a scheduled retry's time has come). A fresh row is
# not due during its grace period (the fast path has it in hand), and rows this process
# published and not deleted yet are left out. The age counts from when a row became due.
_BACKLOG = (
    "SELECT count(*) AS backlog,"
    " coalesce(extract(epoch FROM now() - min(available_at)), 0) AS oldest"
    " FROM outbox WHERE available_at <= now() AND NOT (id = ANY($1::uuid[]))"
)


def _count_published(messages: list[OutgoingMessage]) -> None:
    for m in messages:
        MESSAGES_PUBLISHED.labels(m.exchange, m.message_type).inc()


class OutboxRelay:
    def __init__(
        self,
        pool: asyncpg.Pool,
        broker: Broker,
        *,
        sweep_interval: float,
        publish_wait: float = 1.0,
        batch_size: int = 200,
        clean_delay: float = 0.5,
    ) -> None:
        self._pool = pool
        self._broker = broker
        self._publish_wait = publish_wait
        self._unconfirmed: set[asyncio.Task[None]] = set()  # publishes no one waits on
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
        if self._broker.blocked:  # the sweep publishes them once RabbitMQ takes messages
            return
        try:
            await self._publish(now_ready)
        except TimeoutError:
            log.warning(
                "outbox fast path: %d message(s) not confirmed within %.1fs (RabbitMQ %s); "
                "they stay in the outbox until they are",
                len(now_ready),
                self._publish_wait,
                "blocked the connection" if self._broker.blocked else "is slow",
            )
        except Exception as exc:  # the sweep will publish what is left
            log.warning(
                "outbox fast path failed, leaving %d message(s) to the sweep: %s",
                len(now_ready),
                exc,
            )

    async def _publish(self, messages: list[OutgoingMessage]) -> None:
        """Publish and wait for the confirms, for `publish_wait` seconds at most
        (TimeoutError): the publish goes on without a waiter, and the rows are marked
        published once it is confirmed."""
        task = asyncio.ensure_future(self._broker.publish_many(messages))
        task.add_done_callback(lambda done: self._confirmed(done, messages))
        self._unconfirmed.add(task)
        await asyncio.wait_for(asyncio.shield(task), self._publish_wait)

    def _confirmed(self, task: asyncio.Task[None], messages: list[OutgoingMessage]) -> None:
        self._unconfirmed.discard(task)
        if task.cancelled() or task.exception() is not None:
            return  # whoever waited has logged it; if nobody did, the sweep sends them
        _count_published(messages)
        self._published.update(m.message_id for m in messages)
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

    async def read_backlog(self) -> None:
        """The backlog gauges, read from the table (shared by every replica)."""
        async with connection(self._pool) as conn:
            row = await conn.fetchrow(_BACKLOG, list(self._published))
        OUTBOX_BACKLOG.set(row["backlog"])
        OUTBOX_OLDEST_AGE.set(float(row["oldest"]))

    async def sweep_once(self) -> int:
        if self._broker.blocked:  # a transaction held open for as long as the alarm lasts
            return 0
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
            # Confirmed in time, the rows go with this transaction; if not, it rolls back
            # and the late confirm marks them for the cleaner.
            await self._publish(messages)
            self._published.difference_update(m.message_id for m in messages)
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
