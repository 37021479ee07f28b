"""The live saga stream (Server-Sent Events): every transition of every saga, as the
orchestrator's history table holds it, handed out after the commit that wrote it, by
every replica to its own subscribers.

Where a transition is in the stream: `(txid, id)`, its writing transaction and its
history row. A row is handed out only once every transaction older than its own has
ended (`txid < pg_snapshot_xmin(pg_current_snapshot())`), so no row can turn up later
behind one already sent: a subscriber that resumes after the last position it saw
(`Last-Event-ID`) misses nothing, whichever replica wrote what.

Each process runs one hub while anybody listens: a connection of its own that LISTENs
for the NOTIFY every saga write sends on commit (saga_orchestrator.repository), reads
what is new once per burst of commits, formats each event once, and offers it to every
subscriber. A subscriber first catches up from its own position, then takes the hub's
events after it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg
import orjson

from saga_orchestrator import metrics
from saga_orchestrator.domain import TERMINAL
from shared_domain import pg
from shared_domain.db import Connection
from shared_domain.pg import connection
from shared_domain.runtime import Runtime

log = logging.getLogger(__name__)

CHANNEL = "saga_changes"
PAGE = 500  # rows a read takes at most
COALESCE = 0.05  # seconds between two reads of the hub: a burst of commits is one read
SAFETY_POLL = 1.0  # seconds: read even without a notification (one held back, or missed)
QUEUE_BATCHES = 512  # a subscriber further behind is cut off, and resumes from where it was
KEEPALIVE = 15.0  # seconds of silence before a comment line keeps proxies from timing out
RECONNECT_DELAY = 1.0
HEARTBEAT = b": keepalive\n\n"
RETRY = b"retry: 2000\n\n"  # how long a browser waits before it reconnects


@dataclass(frozen=True, order=True)
class Position:
    txid: int
    id: int

    _FORMAT = re.compile(r"(\d{1,20})-(\d{1,20})")

    def __str__(self) -> str:
        return f"{self.txid}-{self.id}"

    @classmethod
    def parse(cls, text: str) -> Position:
        match = cls._FORMAT.fullmatch(text.strip())
        if match is None:
            raise ValueError(f"not a stream position: {text[:60]!r} (expected TXID-ID)")
        return cls(int(match[1]), int(match[2]))


START = Position(0, 0)


@dataclass(frozen=True)
class Event:
    position: Position
    saga_id: str
    saga_status: str | None
    wire: bytes  # the event as sent, formatted once for every subscriber

    @property
    def terminal(self) -> bool:
        return self.saga_status in TERMINAL


_COLUMNS = (
    "SELECT h.txid::text AS txid, h.id, h.saga_id, s.order_id, h.saga_status, h.step,"
    " h.status, h.message_type, h.detail, h.at"
    " FROM saga_history h JOIN sagas s ON s.id = h.saga_id"
    " WHERE (h.txid, h.id) > ($1::text::xid8, $2)"
    " AND h.txid < pg_snapshot_xmin(pg_current_snapshot())"
)
_READ_ALL = _COLUMNS + " ORDER BY h.txid, h.id LIMIT $3"
_READ_ONE = _COLUMNS + " AND h.saga_id = $4 ORDER BY h.txid, h.id LIMIT $3"
_HEAD = "SELECT pg_snapshot_xmin(pg_current_snapshot())::text"
# A saga is done with once it is terminal, awaits no reply (a cancelled saga still sends
# its notice) and has nothing written after `cursor`.
_SETTLED = (
    "SELECT s.status = ANY($2::text[]) AND s.deadline_at IS NULL AND NOT EXISTS ("
    " SELECT 1 FROM saga_history h WHERE h.saga_id = s.id"
    " AND (h.txid, h.id) > ($3::text::xid8, $4)) FROM sagas s WHERE s.id = $1"
)
_TERMINAL = sorted(str(status) for status in TERMINAL)


def _event(row: Mapping[str, Any]) -> Event:
    position = Position(int(row["txid"]), row["id"])
    saga_id = str(row["saga_id"])
    data = {
        "saga_id": saga_id,
        "order_id": str(row["order_id"]),
        "saga_status": row["saga_status"],
        "step": row["step"],
        "status": row["status"],
        "message_type": row["message_type"],
        "detail": row["detail"],
        "at": row["at"],
    }
    wire = b"id: %s\nevent: transition\ndata: %s\n\n" % (
        str(position).encode(),
        orjson.dumps(data),
    )
    return Event(position, saga_id, row["saga_status"], wire)


async def read_after(
    conn: Connection, after: Position, saga_id: UUID | None = None, limit: int = PAGE
) -> list[Event]:
    """The transitions after `after` that can be handed out now, oldest first."""
    if saga_id is None:
        rows = await conn.fetch(_READ_ALL, str(after.txid), after.id, limit)
    else:
        rows = await conn.fetch(_READ_ONE, str(after.txid), after.id, limit, saga_id)
    return [_event(r) for r in rows]


async def head(conn: Connection) -> Position:
    """The position of what is committed from now on (nothing before it is handed out)."""
    return Position(int(await conn.fetchval(_HEAD)), 0)


async def settled(conn: Connection, saga_id: UUID, cursor: Position) -> bool:
    """Whether one saga's stream, having sent up to `cursor`, is over."""
    return bool(await conn.fetchval(_SETTLED, saga_id, _TERMINAL, str(cursor.txid), cursor.id))


def end_event(saga_id: UUID, status: str | None) -> bytes:
    data = {"saga_id": str(saga_id), "saga_status": status}
    return b"event: end\ndata: %s\n\n" % orjson.dumps(data)


class _CutOff:
    """Put in a subscriber's queue when it fell too far behind, or the process stops."""


CUT_OFF = _CutOff()


class Subscriber:
    def __init__(self, saga_id: UUID | None) -> None:
        self.saga_id = None if saga_id is None else str(saga_id)
        self.queue: asyncio.Queue[list[Event] | _CutOff] = asyncio.Queue(QUEUE_BATCHES)

    def offer(self, events: list[Event]) -> None:
        if self.saga_id is not None:
            events = [e for e in events if e.saga_id == self.saga_id]
            if not events:
                return
        try:
            self.queue.put_nowait(events)
        except asyncio.QueueFull:
            self.cut_off()

    def cut_off(self) -> None:
        with contextlib.suppress(asyncio.QueueEmpty):
            while True:  # make room: what it has not taken is read again on resume
                self.queue.get_nowait()
        self.queue.put_nowait(CUT_OFF)


class Hub:
    """This process's one reader of the stream, while it has subscribers."""

    def __init__(self, rt: Runtime[Any]) -> None:
        self._rt = rt
        self.subscribers: set[Subscriber] = set()
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._closing = False

    def join(self, saga_id: UUID | None) -> Subscriber:
        if self._closing:
            raise RuntimeError("the process is stopping")
        subscriber = Subscriber(saga_id)
        self.subscribers.add(subscriber)
        metrics.STREAM_SUBSCRIBERS.set(len(self.subscribers))
        if self._task is None or self._task.done():
            self._ready.clear()
            self._task = asyncio.create_task(self._run(), name="saga-stream-hub")
        return subscriber

    def leave(self, subscriber: Subscriber) -> None:
        self.subscribers.discard(subscriber)
        metrics.STREAM_SUBSCRIBERS.set(len(self.subscribers))

    async def ready(self) -> None:
        """Wait until the hub reads: what commits from then on reaches every subscriber."""
        await self._ready.wait()

    def close(self) -> None:
        """End every stream (the process is stopping; the clients resume elsewhere)."""
        self._closing = True
        for subscriber in list(self.subscribers):
            subscriber.cut_off()
        if self._task is not None:
            self._task.cancel()

    async def _run(self) -> None:
        cursor: Position | None = None
        while self.subscribers and not self._closing:
            try:
                cursor = await self._follow(cursor)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("saga stream: lost its database connection (%s); reconnecting", exc)
                await asyncio.sleep(RECONNECT_DELAY)
        self._task = None

    async def _follow(self, cursor: Position | None) -> Position | None:
        settings = self._rt.settings
        conn: asyncpg.Connection = await pg.connect(settings, settings.db_name, connect_timeout=5)
        wake = asyncio.Event()
        try:
            await conn.add_listener(CHANNEL, lambda *_: wake.set())
            if cursor is None:
                cursor = await head(conn)
            self._ready.set()
            while self.subscribers and not self._closing:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), SAFETY_POLL)
                wake.clear()
                while True:
                    events = await read_after(conn, cursor)
                    if events:
                        cursor = events[-1].position
                        for subscriber in list(self.subscribers):
                            subscriber.offer(events)
                    if len(events) < PAGE:
                        break
                await asyncio.sleep(COALESCE)
            return cursor
        finally:
            pg.terminate(conn)


def hub_of(rt: Runtime[Any]) -> Hub:
    hub: Hub | None = rt.components.get(Hub)
    if hub is None:
        hub = rt.components[Hub] = Hub(rt)
        rt.on_closing(hub.close)
    return hub


async def events(
    rt: Runtime[Any], after: Position | None, saga_id: UUID | None = None
) -> AsyncIterator[bytes]:
    """The stream as sent: from `after` (by default: everything of one saga, or what the
    whole stream commits from now on), live; one saga's ends once it is terminal and
    awaits nothing more."""
    hub = hub_of(rt)
    subscriber = hub.join(saga_id)
    try:
        await hub.ready()
        async with connection(rt.pool) as conn:
            if after is not None:
                cursor = after
            elif saga_id is not None:
                cursor = START
            else:
                cursor = await head(conn)
            # Sent once the cursor is fixed, so a client that has read it is sure to get
            # everything that commits from then on (sagactl watch says so, tests wait on it).
            yield RETRY
            last: Event | None = None
            while True:
                page = await read_after(conn, cursor, saga_id)
                if page:
                    cursor, last = page[-1].position, page[-1]
                    yield b"".join(e.wire for e in page)
                if len(page) < PAGE:
                    break
            if saga_id is not None and last is not None and last.terminal:
                done = await settled(conn, saga_id, cursor)
                if done:
                    yield end_event(saga_id, last.saga_status)
                    return
        while True:
            try:
                batch = await asyncio.wait_for(subscriber.queue.get(), KEEPALIVE)
            except TimeoutError:
                yield HEARTBEAT
                continue
            if isinstance(batch, _CutOff):
                return  # the client reconnects with the last id it got, and misses nothing
            fresh = [e for e in batch if e.position > cursor]
            if not fresh:
                continue
            cursor = fresh[-1].position
            yield b"".join(e.wire for e in fresh)
            if saga_id is not None and fresh[-1].terminal:
                async with connection(rt.pool) as conn:
                    over = await settled(conn, saga_id, cursor)
                if over:
                    yield end_event(saga_id, fresh[-1].saga_status)
                    return
    finally:
        hub.leave(subscriber)
