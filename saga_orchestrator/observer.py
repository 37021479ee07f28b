"""The orchestrator in choreography: a passive observer. It hears the same events the
services react to and builds each saga's state and history from them (the saga list,
the live stream, the console, /metrics and the traces work as in orchestration), but
sends nothing. Same rhythm as the handlers: open a unit of work, load the saga, let the
domain decide, save, commit."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime

from saga_orchestrator import metrics, repository
from saga_orchestrator.domain import REPLIES, Observation, Saga, SagaPolicy
from saga_orchestrator.messages import identify, saga_started_by
from saga_orchestrator.settings import Settings
from shared_domain.contracts import CancelShipment, Envelope, MessageType, OrderCreated, utcnow
from shared_domain.db import UnitOfWork
from shared_domain.messaging.consumer import Handler, PermanentError
from shared_domain.runtime import Runtime

log = logging.getLogger(__name__)


class NotSeenYet(Exception):
    """The event follows one the observer has not seen yet (its retry waits for it)."""


async def _keep(uow: UnitOfWork, saga: Saga, cause: Envelope, now: datetime, what: str) -> None:
    """Save what the saga became, count it and say so, all at the commit."""
    identify(saga, [], cause)
    uow.on_commit(metrics.tally(saga, now))
    repository.save_at_commit(uow, saga)
    uow.log_on_commit(log, "order %s: %s", saga.order_id, what)
    await uow.commit()


def build_observer(rt: Runtime[Settings]) -> Mapping[MessageType, Handler]:
    policy: SagaPolicy = rt.settings.saga_policy()

    async def saga_started(envelope: Envelope, order: OrderCreated) -> None:
        saga = saga_started_by(envelope, order)
        async with rt.uow(envelope) as uow:
            if not uow.claimed:
                await uow.commit()  # a repeat: nothing to keep
                return
            now = utcnow()
            saga.start_observed(now, policy)
            identify(saga, [], envelope)
            counted = metrics.tally(saga, now)
            if await repository.add(uow.conn, saga):
                uow.on_commit(counted)
                uow.log_on_commit(log, "observing saga %s of order %s", saga.id, saga.order_id)
            await uow.commit()

    async def observed(envelope: Envelope, _payload: object) -> None:
        event = MessageType(envelope.type)
        async with rt.uow(envelope) as uow:
            if not uow.claimed:
                await uow.commit()
                return
            saga = await repository.locked(uow, envelope.saga_id)
            if saga is None:  # its order.created is still on its way (or being retried)
                raise NotSeenYet(f"{event} for saga {envelope.saga_id}, not observed yet")
            if saga.order_id != envelope.order_id:
                raise PermanentError(
                    f"{event} names order {envelope.order_id}, but saga {saga.id} is for "
                    f"order {saga.order_id}"
                )
            now = utcnow()
            seen = saga.observe(event, envelope.payload, now, policy)
            step = REPLIES[event][0]
            if seen is Observation.EARLY:
                raise NotSeenYet(
                    f"{event} for order {saga.order_id} comes before an event not seen yet "
                    f"(saga {saga.status}, {step} step {saga.steps[step].status})"
                )
            if seen is Observation.STALE:
                uow.log_on_commit(
                    log,
                    "%s for order %s ignored: saga is %s, %s step is %s",
                    event,
                    saga.order_id,
                    saga.status,
                    step,
                    saga.steps[step].status,
                )
                await uow.commit()
                return
            await _keep(uow, saga, envelope, now, f"{event} observed, saga {saga.status}")

    async def unwound(envelope: Envelope, command: CancelShipment) -> None:
        """The order service gave up waiting and unwinds the saga from shipping back."""
        async with rt.uow(envelope) as uow:
            if not uow.claimed:
                await uow.commit()
                return
            saga = await repository.locked(uow, envelope.saga_id)
            if saga is None:
                raise NotSeenYet(f"unwind of saga {envelope.saga_id}, not observed yet")
            now = utcnow()
            if not saga.unwind_observed(now, policy, command.reason):
                uow.log_on_commit(
                    log, "unwind of order %s ignored: saga is %s", saga.order_id, saga.status
                )
                await uow.commit()
                return
            await _keep(
                uow, saga, envelope, now, f"unwound by the order service ({command.reason})"
            )

    handlers: dict[MessageType, Handler] = {
        MessageType.ORDER_CREATED: saga_started,
        MessageType.SHIPPING_CANCEL: unwound,
    }
    handlers.update({event: observed for event in REPLIES})
    return handlers
