"""The deadline watcher: re-sends commands whose reply is overdue and gives up on steps
whose attempts are used up. Deadlines live in the saga rows, so they survive a restart,
and each replica locks the rows it handles (SKIP LOCKED), so none is handled twice."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from saga_orchestrator import metrics, repository
from saga_orchestrator.domain import Outgoing, Saga, SagaPolicy, Step
from saga_orchestrator.messages import describe, emit, span_attributes
from saga_orchestrator.settings import Settings
from shared_domain import logs, tracing
from shared_domain.choreography import CHOREOGRAPHY
from shared_domain.contracts import utcnow
from shared_domain.messaging.topology import (
    INVENTORY_COMMANDS,
    NOTIFICATION_COMMANDS,
    ORCHESTRATOR_EVENTS,
    PAYMENT_COMMANDS,
    SHIPPING_COMMANDS,
)
from shared_domain.runtime import Runtime

log = logging.getLogger(__name__)
BATCH = 100


# Where a step's command and its reply wait: the step's command queue, then ours.
_ON_THE_WAY = {
    Step.PAYMENT: PAYMENT_COMMANDS.name,
    Step.INVENTORY: INVENTORY_COMMANDS.name,
    Step.SHIPPING: SHIPPING_COMMANDS.name,
    Step.NOTIFICATION: NOTIFICATION_COMMANDS.name,
}


async def queued_on_the_way(rt: Runtime[Settings]) -> dict[Step, int]:
    """Messages waiting on each step's way; empty if the broker cannot say (then a
    timeout re-sends as usual)."""
    try:
        depths = await rt.broker.queue_depths([*_ON_THE_WAY.values(), ORCHESTRATOR_EVENTS.name])
    except Exception as exc:
        log.warning("could not read queue depths (timeouts re-send as usual): %s", exc)
        return {}
    ours = depths[ORCHESTRATOR_EVENTS.name]
    return {step: depths[queue] + ours for step, queue in _ON_THE_WAY.items()}


async def fire_due(rt: Runtime[Settings], policy: SagaPolicy, limit: int = BATCH) -> int:
    """Handle the sagas past their deadline now; returns how many."""
    async with rt.uow() as uow:
        now = utcnow()
        due = await repository.due_for_update(uow.conn, now, limit)
        queued = await queued_on_the_way(rt) if due else {}
        changed = []
        for saga in due:
            step = saga.current_step
            # in the saga's own trace: what it sends now is part of its story
            with tracing.continued("saga deadline", saga.trace, span_attributes(saga)):
                outgoing = saga.on_timeout(now, policy, queued)
                uow.on_commit(metrics.tally(saga, now, deadline_passed=True))
                emit(uow, saga, outgoing, None)
                repository.save_at_commit(uow, saga)
            changed.append((saga, step, outgoing))
        await uow.commit()
    for saga, step, outgoing in changed:
        with logs.bind(
            saga_id=str(saga.id), order_id=str(saga.order_id), correlation_id=saga.correlation_id
        ):
            _log_timeout(saga, step, outgoing, queued)
    return len(due)


def _log_timeout(
    saga: Saga, step: Step | None, outgoing: list[Outgoing], queued: dict[Step, int]
) -> None:
    name = step.value if step else "no"
    if not outgoing and not saga.is_terminal and step is not None:
        log.info(
            "order %s: %s step overdue, %d message(s) queued on its way: no copy sent",
            saga.order_id,
            name,
            queued.get(step, 0),
        )
        return
    log.warning("order %s: %s step timed out -> %s", saga.order_id, name, describe(saga, outgoing))


async def watch_deadlines(rt: Runtime[Settings], stop: asyncio.Event) -> None:
    if rt.settings.saga_mode == CHOREOGRAPHY:
        return  # an observer sends nothing: the order service keeps the deadlines then
    interval = rt.settings.timeout_check_interval
    policy = rt.settings.saga_policy()
    while not stop.is_set():
        try:
            # While RabbitMQ blocks the connection nothing sent goes out and no reply
            # comes in: a deadline passing then says nothing of the step.
            fired = 0 if rt.broker.blocked else await fire_due(rt, policy)
        except Exception as exc:  # the database may be down: try again next round
            log.warning("deadline check failed (will retry): %s", exc)
            fired = 0
        if fired < BATCH:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)
