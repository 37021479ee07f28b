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
from uuid import UUID

from shared_domain.contracts import Envelope
from shared_domain.db import Connection
from shared_domain.messaging.consumer import PermanentError
from shared_domain.pg import connection
from shared_domain.runtime import Runtime


class Record(Protocol):
    saga_id: UUID | None  # the saga whose command made it (None: made before it was kept)

    @property
    def status(self) -> Any: ...


def refuse_other_saga(envelope: Envelope, recorded: Record | None, what: str) -> None:
    """An order has one saga: a command for it from another names a saga that is not
    the order's (a forged or misrouted message), and is dead-lettered, changing nothing."""
    if recorded is None or recorded.saga_id is None or recorded.saga_id == envelope.saga_id:
        return
    raise PermanentError(
        f"{envelope.type} for order {envelope.order_id} names saga {envelope.saga_id}, but "
        f"the order's {what} was made by saga {recorded.saga_id}"
    )


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
    what = envelope.type.split(".", 1)[0]
    async with connection(rt.pool) as conn:
        recorded = await find(conn)
    refuse_other_saga(envelope, recorded, what)
    new = await work() if recorded is None else None
    if new is not None:
        new.saga_id = envelope.saga_id
    async with rt.uow(envelope) as uow:
        if new is not None:
            recorded = await record(uow.conn, new)
            refuse_other_saga(envelope, recorded, what)
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
