"""Database access.

Message handlers and commands run in a `UnitOfWork` on a plain asyncpg connection: the
hot path (inbox claim, state change, outbox insert, commit) costs about a third of the
client CPU it costs through SQLAlchemy's async layer, and asyncpg prepares and caches
every statement per connection. SQLAlchemy keeps the schema (Alembic), the read side,
health checks and seeding, on a small engine of its own.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Hashable, Mapping
from types import TracebackType
from typing import Any, Self, TypeAlias

import asyncpg
import orjson
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from shared_domain import inbox, logs
from shared_domain.contracts import Envelope, utcnow
from shared_domain.metrics import OUTCOMES
from shared_domain.outbox import OutboxRelay, StagedMessage, insert_and_commit_script, stage
from shared_domain.pg import discard_if_broken, terminate
from shared_domain.settings import ServiceSettings

# The connection a unit of work hands to repositories (a pool proxy of one in practice).
Connection: TypeAlias = asyncpg.Connection

# A service starts on empty tables. A plan cached then is a sequential scan, and with no
# statistics gathered (none yet, or none ever where autovacuum is off) nothing makes
# PostgreSQL plan again as the table grows: the orchestrator would read every saga it
# ever stored for each batch. So the writers' statements are prepared again every
# DB_STATEMENT_LIFETIME seconds (planned for the table as it is then), and the read
# side, whose queries are few, plans every execution.
_READ_SERVER_SETTINGS = {"plan_cache_mode": "force_custom_plan"}


def create_engine(settings: ServiceSettings) -> AsyncEngine:
    """The read side's engine (queries, health checks, seeding)."""
    return create_async_engine(
        settings.database_url(),
        # A fixed pool: overflow connections would be opened and closed again under
        # every burst. Pre-ping: this pool sits idle between queries, so after a database
        # restart its connections are dead, and a query (or readiness check) should not
        # be the one to find out. Off the hot path, the round trip is cheap.
        pool_size=settings.db_read_pool_size,
        max_overflow=0,
        pool_pre_ping=True,
        pool_recycle=1800,
        connect_args={"server_settings": _READ_SERVER_SETTINGS},
    )


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


async def _init_connection(conn: Connection) -> None:
    for name in ("json", "jsonb"):
        await conn.set_type_codec(name, encoder=_dumps, decoder=orjson.loads, schema="pg_catalog")


async def _keep_session(conn: Connection) -> None:
    """Nothing to reset on release: units of work set no session state (no SET, LISTEN
    or advisory locks), and asyncpg still rolls back a transaction left open. Skipping
    asyncpg's default reset saves a round trip per unit of work."""


async def create_pool(settings: ServiceSettings) -> asyncpg.Pool:
    """The writers' pool. It opens connections on demand (none at start-up) up to
    DB_POOL_SIZE and keeps them; a connection that died fails its statement as an
    outage (retried) and is replaced on the next acquire."""
    pool: asyncpg.Pool = await asyncpg.create_pool(
        host=settings.db_host,
        port=settings.db_port,
        user=settings.db_user,
        password=settings.db_password,
        database=settings.db_name,
        min_size=0,
        max_size=settings.db_pool_size,
        max_inactive_connection_lifetime=1800,
        init=_init_connection,
        reset=_keep_session,
        max_cached_statement_lifetime=settings.db_statement_lifetime,
    )
    return pool


_ROLLED_BACK = "a statement failed; the transaction was rolled back"


class TransactionRolledBack(Exception):
    """COMMIT found the transaction already failed; nothing of it was kept."""


class UnitOfWork:
    """One database transaction; the messages it emits go to the outbox in the same
    transaction and are handed to the relay only after the commit succeeds.

    Opened for an incoming message, it claims the message (the inbox) as the transaction
    begins, in the same round trip; `claimed` is False if the message was handled
    before. Opened with `begin_later`, it holds a connection and begins with the first
    `begin()` (a batch: with its first message's claim)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        relay: OutboxRelay | None,
        outbox_grace: float,
        message: Envelope | None = None,
        *,
        begin_later: bool = False,
    ) -> None:
        self._pool = pool
        self._relay = relay
        self._grace = outbox_grace
        self._message = message
        self._begin_later = begin_later
        self._conn: Connection | None = None
        self._begun = False
        self._staged: list[StagedMessage] = []
        # What this transaction loaded, by key (an identity map): rows a batch locked for
        # its handlers at once, and what repositories keep to write as it commits.
        self.loaded: dict[Hashable, Any] = {}
        self._before_commit: dict[Hashable, Callable[[Connection], Awaitable[None]]] = {}
        self._logs_on_commit: list[tuple[logging.Logger, int, str, Mapping[str, str]]] = []
        self._on_commit: list[Callable[[], None]] = []
        self.claimed = True
        self.committed = False

    async def __aenter__(self) -> Self:
        conn = await self._pool.acquire()
        self._conn = conn
        if not self._begin_later:
            try:
                self.claimed = await self.begin(self._message)
            except BaseException as exc:
                self._conn = None
                discard_if_broken(conn, exc)
                await self._pool.release(conn)
                raise
        return self

    async def begin(self, message: Envelope | None = None) -> bool:
        """Begin the transaction if it has not begun, claiming `message` if given;
        False if that message was handled before."""
        if self._begun:
            if message is None:
                return True
            claimed = await inbox.claim(self.conn, message.message_id, message.type)
            if not claimed:
                OUTCOMES.duplicate(message.message_id)
            return claimed
        if message is None:
            self._begun = True
            await self.conn.execute("BEGIN")
            return True
        return await self.begin_claiming([message])

    async def begin_claiming(self, messages: list[Envelope]) -> bool:
        """Begin the transaction and claim all of `messages` in the same round trip: True
        if every one of them is new. If not, the transaction holds the claims of the new
        ones only, so a batch must not commit it as it is."""
        if self._begun:
            raise RuntimeError("the transaction has begun already")
        self._begun = True  # from here on, whatever happens, a rollback is due
        claimed = await inbox.begin_and_claim(self.conn, [(m.message_id, m.type) for m in messages])
        if not claimed and len(messages) == 1:  # a batch's repeat is found when it replays
            OUTCOMES.duplicate(messages[0].message_id)
        return claimed

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._conn is not None
        conn, self._conn = self._conn, None
        try:
            if self._begun and not self.committed:
                try:
                    await conn.execute("ROLLBACK")
                except Exception as rollback_exc:
                    # The connection broke mid-transaction: never hand it back, and let
                    # the error that broke it be the one that propagates.
                    terminate(conn)
                    if exc is None:
                        raise rollback_exc from None
            discard_if_broken(conn, exc)
        finally:
            await self._pool.release(conn)

    @property
    def conn(self) -> Connection:
        if self._conn is None:
            raise RuntimeError("unit of work is not open")
        return self._conn

    def emit(self, envelope: Envelope, *, delay: float = 0.0) -> None:
        self._staged.append(stage(envelope, utcnow(), self._grace, delay))

    def before_commit(self, key: Hashable, write: Callable[[Connection], Awaitable[None]]) -> None:
        """Run `write` just before the commit (once per key): writes gathered from several
        handlers of a batch go to the database in one statement."""
        self._before_commit.setdefault(key, write)

    def log_on_commit(
        self, logger: logging.Logger, message: str, *args: object, level: int = logging.INFO
    ) -> None:
        """Log what the transaction did once it has committed, and never if it rolls
        back. In a batch a handler's work is kept only if the whole batch commits (if it
        cannot, every message is handled again on its own), so a line logged at once
        could tell of work that was undone, or tell it twice. Formatted now: a later
        message of the batch may change the same objects."""
        if logger.isEnabledFor(level):
            text = message % args if args else message
            # with the ids of the message it is about: a batch logs after its last handler
            self._logs_on_commit.append((logger, level, text, logs.fields()))

    def on_commit(self, callback: Callable[[], None]) -> None:
        """Call `callback` once the transaction has committed (never if it rolls back):
        what it did is counted (metrics) only when it is kept."""
        self._on_commit.append(callback)

    @property
    def staged(self) -> list[StagedMessage]:
        return self._staged

    async def commit(self) -> None:
        if not self._begun:
            await self.begin()
        writes, self._before_commit = list(self._before_commit.values()), {}
        for write in writes:
            await write(self.conn)
        # The outbox rows and COMMIT go in one round trip. PostgreSQL answers COMMIT on
        # a transaction a failed statement aborted with a rollback, not an error (and
        # refuses the insert into one): a handler that swallowed a database error must
        # not pass for committed.
        script = insert_and_commit_script(self._staged, utcnow()) if self._staged else "COMMIT"
        try:
            status = await self.conn.execute(script)
        except asyncpg.InFailedSQLTransactionError as exc:
            raise TransactionRolledBack(_ROLLED_BACK) from exc
        if status != "COMMIT":
            raise TransactionRolledBack(_ROLLED_BACK)
        self.committed = True
        lines, self._logs_on_commit = self._logs_on_commit, []
        for logger, level, text, fields in lines:
            logger.log(level, "%s", text, extra=dict(fields))
        callbacks, self._on_commit = self._on_commit, []
        for callback in callbacks:
            callback()
        if self._relay is not None and self._staged:
            await self._relay.publish_committed(self._staged)
