"""The orchestrator in choreography: a passive observer. It hears the same events the
services react to and builds each saga's state and history from them (the saga list,
the live stream, the console, /metrics and the traces work as in orchestration), but
sends nothing. Same rhythm as the handlers: open a unit of work, load the saga, let the
domain decide, save, commit."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime

from saga_orchestrator import metrics, repository
from saga_orchestrator.domain import REPLIES, Observation, Saga, SagaPolicy
from saga_orchestrator.messages import identify, saga_started_by
from saga_orchestrator.settings import Settings
from shared_domain.contracts import (
    CancelShipment,
    Envelope,
    MessageType,
    OrderCreated,
    OrderFailed,
    utcnow,
)
from shared_domain.db import UnitOfWork
from shared_domain.messaging.consumer import Handler, PermanentError, WaitingFor
from shared_domain.runtime import Runtime

log = logging.getLogger(__name__)


class NotSeenYet(WaitingFor):
    """The event follows one the observer has not seen yet: it waits for it (up to
    MESSAGE_MAX_WAIT, not spending its retries)."""


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
            if seen is Observation.KEPT:
                what = f"{event} kept until the saga undoes its {step} step"
            else:
                what = f"{event} observed, saga {saga.status}"
            await _keep(uow, saga, envelope, now, what)

    def by_the_order_service(what: str, act: Callable[[Saga, datetime, str], bool]) -> Handler:
        """A handler of the order service's own word on a saga (its unwind, its giving
        up): `act` applies it, False when the saga's state does not take it."""

        async def handle(envelope: Envelope, payload: CancelShipment | OrderFailed) -> None:
            async with rt.uow(envelope) as uow:
                if not uow.claimed:
                    await uow.commit()
                    return
                saga = await repository.locked(uow, envelope.saga_id)
                if saga is None:
                    raise NotSeenYet(f"{envelope.type} of saga {envelope.saga_id}, not seen yet")
                now = utcnow()
                if not act(saga, now, payload.reason):
                    uow.log_on_commit(
                        log,
                        "%s of order %s ignored: saga is %s",
                        envelope.type,
                        saga.order_id,
                        saga.status,
                    )
                    await uow.commit()
                    return
                await _keep(uow, saga, envelope, now, f"{what} ({payload.reason})")

        return handle

    # The order service gave up waiting and unwinds the saga from shipping back; then,
    # with no outcome of the unwind either, it failed the order.
    unwound = by_the_order_service(
        "unwound by the order service",
        lambda saga, now, reason: saga.unwind_observed(now, policy, reason),
    )
    given_up = by_the_order_service("failed by the order service", Saga.fail_observed)

    handlers: dict[MessageType, Handler] = {
        MessageType.ORDER_CREATED: saga_started,
        MessageType.SHIPPING_CANCEL: unwound,
        MessageType.ORDER_FAILED: given_up,
    }
    handlers.update({event: observed for event in REPLIES})
    return handlers
