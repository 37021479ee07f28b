"""Message handlers, one per message type the order service consumes: the status events
of the saga. Open a unit of work, load the order, let the domain decide, save, commit."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from order_service import repository
from order_service.domain import OrderStatus
from order_service.settings import Settings
from shared_domain.contracts import Envelope, MessageType, utcnow
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


async def preload(uow: UnitOfWork, messages: list[tuple[Envelope, object]]) -> None:
    """A batch locks the orders its events move in one statement, in id order."""
    await repository.lock_all(uow, sorted({e.order_id for e, _ in messages}))


def build_handlers(rt: Runtime[Settings]) -> Mapping[MessageType, Handler]:
    async def on_status(envelope: Envelope, _payload: object) -> None:
        status = STATUS_EVENTS[MessageType(envelope.type)]
        reason = envelope.payload.get("reason")
        async with rt.uow(envelope) as uow:
            if not uow.claimed:
                await uow.commit()  # a repeat: nothing to keep
                return
            order = await repository.locked(uow, envelope.order_id)
            if order is None:
                uow.log_on_commit(
                    log,
                    "%s for unknown order %s ignored",
                    envelope.type,
                    envelope.order_id,
                    level=logging.WARNING,
                )
                await uow.commit()
                return
            if order.saga_id != envelope.saga_id:
                raise PermanentError(
                    f"{envelope.type} names saga {envelope.saga_id}, but order {order.id} "
                    f"belongs to saga {order.saga_id}"
                )
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
