"""Choreography's deadlines, kept by the order service: it sees every saga start (it
places the order) and every way one ends, so it notices a saga that does not end.

A saga with no outcome SAGA_DEADLINE_SECONDS after its order is unwound: the order
service sends `shipping.cancel`, and the undos run back from there as they do after a
failure (shipping cancels or leaves a tombstone that refuses a late booking, inventory
releases, payment refunds, the order is cancelled). Every step before it may or may not
have run, which is why the unwind starts at the last one: an undo of what never ran only
leaves its tombstone. A saga still without an outcome that long after the unwind fails,
for a human to look at (a message of it may be in a dead-letter queue), and
`order.failed` says so to the observer. Deadlines come
from the orders' rows, so they survive a restart, and replicas share them out by
locking (SKIP LOCKED)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

from order_service import repository
from order_service.domain import OrderStatus
from order_service.messages import given_up, unwind
from order_service.settings import Settings
from shared_domain.choreography import CHOREOGRAPHY
from shared_domain.contracts import utcnow
from shared_domain.runtime import Runtime

log = logging.getLogger(__name__)

BATCH = 100


async def fire_due(rt: Runtime[Settings]) -> int:
    """Unwind or fail the overdue sagas, at most BATCH; returns how many."""
    now = utcnow()
    wait = rt.settings.saga_deadline
    before = now - timedelta(seconds=wait)
    async with rt.uow() as uow:
        orders = await repository.overdue(uow.conn, before, BATCH)
        for order in orders:
            if order.unwind(now):
                reason = f"no outcome within {wait:g}s of the order: unwound"
                uow.emit(unwind(order, reason))
                uow.log_on_commit(
                    log,
                    "order %s: %s (shipping.cancel sent)",
                    order.id,
                    reason,
                    level=logging.WARNING,
                )
            else:
                reason = (
                    f"no outcome within {wait:g}s of unwinding its saga: a message of it "
                    "may be in a dead-letter queue"
                )
                order.settle(OrderStatus.FAILED, reason, now)
                uow.emit(given_up(order, reason))
                uow.log_on_commit(
                    log,
                    "order %s is now failed (%s; order.failed sent)",
                    order.id,
                    reason,
                    level=logging.ERROR,
                )
            await repository.save(uow.conn, order)
        await uow.commit()
    return len(orders)


async def watch_deadlines(rt: Runtime[Settings], stop: asyncio.Event) -> None:
    if rt.settings.saga_mode != CHOREOGRAPHY:
        return  # the orchestrator keeps each step's deadline then
    while not stop.is_set():
        try:
            fired = await fire_due(rt)
        except Exception as exc:  # the database may be down: try again next round
            log.warning("saga deadline check failed (will retry): %s", exc)
            fired = 0
        if fired < BATCH:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), rt.settings.deadline_check_interval)
