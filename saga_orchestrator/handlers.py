"""Message handlers, one per message type the orchestrator consumes: open a unit of work,
load the saga, let the domain decide, save, emit, commit."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from saga_orchestrator import metrics, repository
from saga_orchestrator.domain import REPLIES, SagaPolicy
from saga_orchestrator.messages import describe, emit, identify, saga_started_by
from saga_orchestrator.observer import build_observer
from saga_orchestrator.settings import Settings
from shared_domain.choreography import CHOREOGRAPHY
from shared_domain.contracts import Envelope, MessageType, OrderCreated, utcnow
from shared_domain.db import UnitOfWork
from shared_domain.messaging.consumer import Handler, PermanentError
from shared_domain.runtime import Runtime

log = logging.getLogger(__name__)


_REPLY_TYPES = frozenset(reply.value for reply in REPLIES)


async def preload(uow: UnitOfWork, messages: list[tuple[Envelope, object]]) -> None:
    """A batch locks the sagas its replies advance in one statement, in id order."""
    saga_ids = sorted({e.saga_id for e, _ in messages if e.type in _REPLY_TYPES})
    if saga_ids:
        await repository.lock_all(uow, saga_ids)


def build_handlers(rt: Runtime[Settings]) -> Mapping[MessageType, Handler]:
    if rt.settings.saga_mode == CHOREOGRAPHY:
        return build_observer(rt)
    policy: SagaPolicy = rt.settings.saga_policy()

    async def start_saga(envelope: Envelope, order: OrderCreated) -> None:
        saga = saga_started_by(envelope, order)
        async with rt.uow(envelope) as uow:
            if not uow.claimed:
                uow.log_on_commit(
                    log,
                    "duplicate order.created %s for order %s ignored",
                    envelope.message_id,
                    envelope.order_id,
                )
                await uow.commit()  # a repeat: nothing to keep
                return
            now = utcnow()
            outgoing = identify(saga, saga.start(now, policy), envelope)
            counted = metrics.tally(saga, now)
            if not await repository.add(uow.conn, saga):
                uow.log_on_commit(
                    log,
                    "saga for order %s already exists; order.created ignored",
                    envelope.order_id,
                )
                await uow.commit()
                return
            emit(uow, saga, outgoing, envelope)
            uow.on_commit(counted)
            uow.log_on_commit(
                log,
                "saga %s started for order %s (total %s)",
                saga.id,
                saga.order_id,
                order.total_amount,
            )
            await uow.commit()

    async def advance(envelope: Envelope, _payload: object) -> None:
        reply = MessageType(envelope.type)
        async with rt.uow(envelope) as uow:
            if not uow.claimed:
                uow.log_on_commit(
                    log,
                    "duplicate %s %s for order %s ignored",
                    reply,
                    envelope.message_id,
                    envelope.order_id,
                )
                await uow.commit()  # a repeat: nothing to keep
                return
            saga = await repository.locked(uow, envelope.saga_id)
            if saga is None:
                raise PermanentError(f"{reply} refers to unknown saga {envelope.saga_id}")
            if saga.order_id != envelope.order_id:
                raise PermanentError(
                    f"{reply} names order {envelope.order_id}, but saga {saga.id} is for "
                    f"order {saga.order_id}"
                )
            step = REPLIES[reply][0]
            in_flight = saga.steps[step].command_id
            if envelope.causation_id != in_flight:
                # A reply to a command superseded by a newer one (an operator's retry, a
                # compensation's next attempt), or to one this saga never sent.
                uow.log_on_commit(
                    log,
                    "%s for order %s ignored: it answers command %s, the %s step's command "
                    "in flight is %s",
                    reply,
                    saga.order_id,
                    envelope.causation_id,
                    step,
                    in_flight,
                    level=logging.WARNING,
                )
                await uow.commit()
                return
            now = utcnow()
            outgoing = saga.handle(reply, envelope.payload, now, policy)
            if outgoing is None:
                uow.log_on_commit(
                    log,
                    "%s for order %s ignored: saga is %s, %s step is %s",
                    reply,
                    saga.order_id,
                    saga.status,
                    step,
                    saga.steps[step].status,
                )
                await uow.commit()
                return
            uow.on_commit(metrics.tally(saga, now))
            emit(uow, saga, outgoing, envelope)
            repository.save_at_commit(uow, saga)
            uow.log_on_commit(
                log, "order %s: %s -> %s", saga.order_id, reply, describe(saga, outgoing)
            )
            await uow.commit()

    handlers: dict[MessageType, Handler] = {MessageType.ORDER_CREATED: start_saga}
    handlers.update({reply: advance for reply in REPLIES})
    return handlers
