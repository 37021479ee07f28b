"""The worker rhythm for a command whose work calls the outside world (a provider, a
carrier, a mail gateway): find what is recorded for the order, or do the work outside
any transaction; then, in one unit of work, record the outcome unless one was recorded
meanwhile, emit the reply built from what is recorded, and commit; log after the
commit. Why the call stays outside the transaction: docs/architecture.md, "The worker
rhythm"."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from shared_domain.contracts import Envelope
from shared_domain.db import Connection
from shared_domain.pg import connection
from shared_domain.runtime import Runtime


class Record(Protocol):
    @property
    def status(self) -> Any: ...


R = TypeVar("R", bound=Record)


async def handle_command(
    rt: Runtime[Any],
    envelope: Envelope,
    log: logging.Logger,
    *,
    find: Callable[[Connection], Awaitable[R | None]],
    work: Callable[[], Awaitable[R]],
    record: Callable[[Connection, R], Awaitable[R]],
    reply: Callable[[Envelope, R], Envelope],
    done: Callable[[R], str],
) -> R:
    """Returns what is recorded. `record` inserts unless the order has a record already,
    and returns the one recorded; `done` says what new work did, for the log."""
    async with connection(rt.pool) as conn:
        recorded = await find(conn)
    new = await work() if recorded is None else None
    async with rt.uow(envelope) as uow:
        if new is not None:
            recorded = await record(uow.conn, new)
        if recorded is None:  # find or record found nothing: neither can return None then
            raise RuntimeError(f"no outcome recorded for {envelope.type} {envelope.message_id}")
        if recorded is new:
            uow.log_on_commit(log, "order %s: %s", envelope.order_id, done(recorded))
        else:
            uow.log_on_commit(
                log,
                "%s for order %s already handled (%s); re-sending outcome",
                envelope.type,
                envelope.order_id,
                recorded.status,
            )
        uow.emit(reply(envelope, recorded))
        await uow.commit()
    return recorded
