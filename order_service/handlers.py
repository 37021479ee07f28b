"""Message handlers, one per message type the order service consumes: in orchestration
the status events the orchestrator sends; in choreography the services' own events, on
which the order service ends the order itself (and announces a cancellation, for the
notification service to tell the customer). Open a unit of work, load the order, let
the domain decide, save, emit, commit."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from order_service import repository
from order_service.domain import Order, OrderStatus
from order_service.messages import order_cancelled
from order_service.settings import Settings
from shared_domain.choreography import (
    CHOREOGRAPHY,
    ORDER_SUBSCRIPTIONS,
    names_a_failed_undo,
    undo_failed,
)
from shared_domain.contracts import Envelope, MessageType, NotificationKind, utcnow
from shared_domain.db import UnitOfWork
from shared_domain.messaging.consumer import Handler, PermanentError
from shared_domain.runtime import Runtime

log = logging.getLogger(__name__)

STATUS_EVENTS = {
    MessageType.ORDER_PROCESSING: OrderStatus.PROCESSING,
    MessageType.ORDER_COMPLETED: OrderStatus.COMPLETED,
    MessageType.ORDER_CANCELLED: OrderStatus.CANCELLED,
    MessageType.ORDER_FAILED: OrderStatus.FAILED,
}


# Choreography: what each event the order service hears does to the order, with the
# reason it gives (from the event's payload).
def _outcome(event: MessageType, payload: dict[str, Any]) -> tuple[OrderStatus, str | None] | None:
    reason = payload.get("reason")
    if event is MessageType.PAYMENT_PROCESSED:
        return OrderStatus.PROCESSING, None
    if event is MessageType.PAYMENT_FAILED:
        return OrderStatus.CANCELLED, f"payment failed: {reason}"
    if event is MessageType.PAYMENT_REFUNDED:  # the last undo: its reason came back along them
        if names_a_failed_undo(reason):  # an undo before it could not be done
            return OrderStatus.FAILED, reason
        return OrderStatus.CANCELLED, reason or "cancelled"
    if event in (MessageType.NOTIFICATION_SENT, MessageType.NOTIFICATION_FAILED):
        if payload.get("kind") != NotificationKind.ORDER_CONFIRMATION.value:
            return None  # the cancellation notice: the order has ended already
        return OrderStatus.COMPLETED, None
    return OrderStatus.FAILED, undo_failed(event.value.split(".", 1)[0], reason)


async def preload(uow: UnitOfWork, messages: list[tuple[Envelope, object]]) -> None:
    """A batch locks the orders its events move in one statement, in id order."""
    await repository.lock_all(uow, sorted({e.order_id for e, _ in messages}))


async def order_of(uow: UnitOfWork, envelope: Envelope) -> Order | None:
    """The order the message is about, locked; None (logged) for an unknown order. An
    order has one saga: a message naming another is dead-lettered."""
    order = await repository.locked(uow, envelope.order_id)
    if order is None:
        uow.log_on_commit(
            log,
            "%s for unknown order %s ignored",
            envelope.type,
            envelope.order_id,
            level=logging.WARNING,
        )
        return None
    if order.saga_id != envelope.saga_id:
        raise PermanentError(
            f"{envelope.type} names saga {envelope.saga_id}, but order {order.id} "
            f"belongs to saga {order.saga_id}"
        )
    return order


def build_handlers(rt: Runtime[Settings]) -> Mapping[MessageType, Handler]:
    if rt.settings.saga_mode == CHOREOGRAPHY:
        return build_reactions(rt)

    async def on_status(envelope: Envelope, _payload: object) -> None:
        status = STATUS_EVENTS[MessageType(envelope.type)]
        reason = envelope.payload.get("reason")
        async with rt.uow(envelope) as uow:
            if not uow.claimed:
                await uow.commit()  # a repeat: nothing to keep
                return
            order = await order_of(uow, envelope)
            if order is None:
                await uow.commit()
                return
            if order.move_to(status, reason, utcnow()):
                await repository.save(uow.conn, order)
                uow.log_on_commit(
                    log, "order %s is now %s%s", order.id, status, f" ({reason})" if reason else ""
                )
            else:
                uow.log_on_commit(
                    log, "order %s: %s ignored, order is %s", order.id, envelope.type, order.status
                )
            await uow.commit()

    return dict.fromkeys(STATUS_EVENTS, on_status)


def build_reactions(rt: Runtime[Settings]) -> Mapping[MessageType, Handler]:
    async def on_event(envelope: Envelope, _payload: object) -> None:
        event = MessageType(envelope.type)
        async with rt.uow(envelope) as uow:
            if not uow.claimed:
                await uow.commit()  # a repeat: nothing to keep
                return
            order = await order_of(uow, envelope)
            outcome = _outcome(event, envelope.payload) if order is not None else None
            if order is None or outcome is None:
                await uow.commit()
                return
            status, reason = outcome
            if not order.settle(status, reason, utcnow()):
                uow.log_on_commit(
                    log, "order %s: %s ignored, order is %s", order.id, event, order.status
                )
                await uow.commit()
                return
            await repository.save(uow.conn, order)
            if status is OrderStatus.CANCELLED:
                uow.emit(order_cancelled(order, envelope))
            uow.log_on_commit(
                log,
                "order %s is now %s on %s%s",
                order.id,
                status,
                event,
                f" ({reason})" if reason else "",
            )
            await uow.commit()

    return dict.fromkeys(ORDER_SUBSCRIPTIONS, on_event)
