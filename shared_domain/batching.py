"""Several messages to one transaction (group commit).

Under load a consumer has many deliveries waiting. Handled one to a transaction, each
pays for its own BEGIN, outbox insert and COMMIT (a WAL flush), and on a two-core
machine those round trips are most of a handler's cost. A `Batcher` runs the handlers
of the messages that are ready one after another in one shared transaction, writes
their outgoing messages with one outbox insert, commits once, then publishes, and only
then does each message's consumer ack it. A message that is waiting alone (light load)
is a batch of one, its own transaction as without batching: nothing waits for a batch
to fill. Either way the consumer moves on to the next batch while the last one's
messages are being published.

The batch claims all its messages (the inbox) with its BEGIN, in one round trip. If
one of them was handled before, the batch goes to the one-by-one replay below, where
that message's handler learns it is a repeat.

Each message's outcome stays its own. If any handler in a batch raises, or leaves its
unit of work without committing (a duplicate it chose to skip), or the commit fails,
the shared transaction is rolled back and every message of the batch is replayed on
its own, in its own unit of work: the others commit as they would have, and the one
that fails is retried or dead-lettered by its consumer as usual. So a batch never keeps
part of a message's work, and never drops a message because of another one. Handlers
must be database-only (the services that call out to a provider, carrier or mail
server do not batch: a replay would repeat the call, and a shared transaction would
wait on each call in turn).

Handlers need no change: `Runtime.uow()` hands out a unit of work joined to the batch's
transaction while the batch runs (a context variable of the batch's task).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Hashable
from contextvars import ContextVar
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self
from uuid import UUID

from shared_domain import logs, tracing
from shared_domain.contracts import Envelope
from shared_domain.db import Connection, UnitOfWork
from shared_domain.messaging.consumer import Handler
from shared_domain.outbox import StagedMessage

log = logging.getLogger(__name__)

# Loads (and locks) in one statement what a batch's handlers will need, into
# `uow.loaded`, after the batch's claims and before its first handler. It is given the
# batch's messages, each with its payload as the handler gets it.
Preload = Callable[[UnitOfWork, list[tuple[Envelope, Any]]], Awaitable[None]]

# Background publishes of committed batches at once, before taking the next batch waits.
PUBLISHING_AT_ONCE = 4


@dataclass
class _Shared:
    """The transaction a batch's handlers share."""

    uow: UnitOfWork
    opened: bool = False  # by the current handler
    skipped: bool = False
    claimed: set[UUID] = field(default_factory=set)  # as the transaction began


_current: ContextVar[_Shared | None] = ContextVar("shared_transaction", default=None)


class JoinedUnitOfWork(UnitOfWork):
    """A message's unit of work inside a batch: the batch's connection and outbox staging.
    `commit()` marks the message's work as complete; the batch commits it with the rest.
    Leaving without committing spoils the batch (it is rolled back and replayed)."""

    def __init__(self, shared: _Shared, message: Envelope | None) -> None:
        # no super().__init__: it owns nothing
        self._shared = shared
        self._message = message
        self.loaded = shared.uow.loaded
        self.claimed = True
        self.committed = False

    async def __aenter__(self) -> Self:
        message, shared = self._message, self._shared
        if message is not None and message.message_id in shared.claimed:
            shared.claimed.discard(message.message_id)
            self.claimed = True
        else:
            self.claimed = await shared.uow.begin(message)
        return self

    @property
    def conn(self) -> Connection:
        return self._shared.uow.conn

    def emit(self, envelope: Envelope, *, delay: float = 0.0) -> None:
        self._shared.uow.emit(envelope, delay=delay)

    def before_commit(self, key: Hashable, write: Callable[[Connection], Awaitable[None]]) -> None:
        self._shared.uow.before_commit(key, write)

    def log_on_commit(
        self, logger: logging.Logger, message: str, *args: object, level: int = logging.INFO
    ) -> None:
        self._shared.uow.log_on_commit(logger, message, *args, level=level)

    def on_commit(self, callback: Callable[[], None]) -> None:
        self._shared.uow.on_commit(callback)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self.committed:
            self._shared.skipped = True

    async def commit(self) -> None:
        self.committed = True


def joined_unit_of_work(message: Envelope | None) -> JoinedUnitOfWork | None:
    """The unit of work to hand a handler that runs inside a batch, else None."""
    shared = _current.get()
    if shared is None:
        return None
    if shared.opened:
        # A second one could not be kept or dropped apart from the first.
        raise RuntimeError("a handler that batches opens one unit of work per message")
    shared.opened = True
    return JoinedUnitOfWork(shared, message)


class _Replay(Exception):
    """The batch cannot commit as a whole; its messages are handled one by one."""


class _Skipped(_Replay):
    """A handler left its unit of work without committing: nothing of it may be kept."""

    def __str__(self) -> str:
        return "a handler skipped its message"


class _SeenBefore(_Replay):
    """A message of the batch was handled before (or is in it twice): its handler must
    see that on its own."""

    def __str__(self) -> str:
        return "a message was handled before"


@dataclass
class _Job:
    handler: Handler
    envelope: Envelope
    payload: Any
    done: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    # The consumer's span, current while the handler runs in the batch's task.
    trace: Any = field(default_factory=tracing.current_context)

    def settle(self, exc: BaseException | None = None) -> None:
        if self.done.done():
            return
        if exc is None:
            self.done.set_result(None)
        else:
            self.done.set_exception(exc)


class Batcher:
    """Runs the handlers of a consumer's ready messages, up to `max_size` to a transaction.
    One batch is in its transaction at a time (so batches of one process never wait on
    each other's row locks); the publishes of committed batches overlap the next one."""

    def __init__(
        self,
        open_uow: Callable[[], UnitOfWork],
        publish: Callable[[list[StagedMessage]], Awaitable[None]],
        *,
        max_size: int,
        preload: Preload | None = None,
    ) -> None:
        self._open_uow = open_uow  # standalone, begins later, does not publish
        self._publish = publish  # the relay's fast path, for what a batch committed
        self._preload = preload
        self._max = max_size
        self._ready: list[_Job] = []
        self._wake = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._publishing: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self._worker = asyncio.create_task(self._work(), name="batcher")

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        if self._publishing:
            await asyncio.wait(self._publishing, timeout=5)

    async def run(self, handler: Handler, envelope: Envelope, payload: Any) -> None:
        """Handle one message; returns once its work is committed (and published), or
        raises what its handler raised when it ran on its own."""
        if self._worker is None:
            await handler(envelope, payload)
            return
        job = _Job(handler, envelope, payload)
        self._ready.append(job)
        self._wake.set()
        await job.done

    async def _work(self) -> None:
        jobs: list[_Job] = []
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self._ready:
                    jobs, self._ready = self._ready[: self._max], self._ready[self._max :]
                    await self._handle(jobs)
        finally:  # stopped: what was not handled is redelivered by the broker
            for job in [*jobs, *self._ready]:
                job.done.cancel()
            self._ready.clear()

    async def _handle(self, jobs: list[_Job]) -> None:
        """One transaction for `jobs`. A single message's outcome is its handler's own
        (what it raised, or nothing kept if it skipped); a batch that cannot commit
        as a whole is replayed message by message."""
        try:
            uow = await self._together(jobs)
        except Exception as exc:
            if len(jobs) == 1:
                jobs[0].settle(None if isinstance(exc, _Skipped) else exc)
                return
            log.info(
                "batch of %d messages rolled back, replaying one by one: %s",
                len(jobs),
                exc if isinstance(exc, _Replay) else repr(exc),
            )
            for job in jobs:
                await self._handle([job])
            return
        await self._settle_after_publishing(uow, jobs)

    async def _together(self, jobs: list[_Job]) -> UnitOfWork:
        """The handlers in one transaction, committed; raises (rolled back) if any of
        them raised or skipped its message, or the commit failed."""
        async with self._open_uow() as uow:
            shared = _Shared(uow)
            if len(jobs) > 1:
                # All the claims with BEGIN, one round trip; a lone message's handler
                # claims its own, and so learns whether it was handled before.
                if not await uow.begin_claiming([job.envelope for job in jobs]):
                    raise _SeenBefore
                shared.claimed = {job.envelope.message_id for job in jobs}
                if self._preload is not None:
                    await self._preload(uow, [(job.envelope, job.payload) for job in jobs])
            token = _current.set(shared)
            try:
                for job in jobs:
                    shared.opened = False
                    # this task is not the consumer's: its message's ids and span
                    with logs.bind_message(job.envelope), tracing.attached(job.trace):
                        await job.handler(job.envelope, job.payload)
                    if shared.skipped:
                        raise _Skipped
            finally:
                _current.reset(token)
            await uow.commit()
        return uow

    async def _settle_after_publishing(self, uow: UnitOfWork, jobs: list[_Job]) -> None:
        async def publish_then_settle() -> None:
            try:
                await self._publish(uow.staged)
            finally:  # committed either way; the sweep publishes what the fast path did not
                for job in jobs:
                    job.settle()

        task = asyncio.create_task(publish_then_settle())
        self._publishing.add(task)
        task.add_done_callback(self._publishing.discard)
        if len(self._publishing) >= PUBLISHING_AT_ONCE:
            await asyncio.wait(self._publishing, return_when=asyncio.FIRST_COMPLETED)
