"""Use cases: open a unit of work, load, call the domain, commit."""

from __future__ import annotations

import hashlib
import logging

from order_service import repository
from order_service.domain import Order, OrderLine, OrderStatus
from order_service.schemas import PlaceOrder
from order_service.settings import Settings
from shared_domain.contracts import Envelope, ItemLine, MessageType, OrderCreated, utcnow
from shared_domain.runtime import Runtime

log = logging.getLogger(__name__)
SOURCE = "order_service"

STATUS_EVENTS = {
    MessageType.ORDER_PROCESSING: OrderStatus.PROCESSING,
    MessageType.ORDER_COMPLETED: OrderStatus.COMPLETED,
    MessageType.ORDER_CANCELLED: OrderStatus.CANCELLED,
    MessageType.ORDER_FAILED: OrderStatus.FAILED,
}


class IdempotencyConflict(Exception):
    """The Idempotency-Key was already used with a different request body."""


def fingerprint(body: PlaceOrder) -> str:
    return hashlib.sha256(body.model_dump_json().encode()).hexdigest()


async def place_order(
    rt: Runtime[Settings], body: PlaceOrder, idempotency_key: str | None, correlation_id: str
) -> tuple[Order, bool]:
    """Returns the order and whether it was created now (False: an idempotent replay)."""
    digest = fingerprint(body) if idempotency_key else None
    async with rt.uow() as uow:
        order = Order.place(
            body.customer_id,
            [OrderLine(i.product_id, i.quantity, i.price) for i in body.items],
            body.shipping_address.model_dump(),
            utcnow(),
            idempotency_key,
            digest,
        )
        if not await repository.add(uow.conn, order):
            assert idempotency_key is not None  # only a key can be taken
            existing = await repository.by_idempotency_key(uow.conn, idempotency_key)
            if existing is None:  # the key's holder committed it (or we would have inserted)
                raise RuntimeError(f"order with Idempotency-Key {idempotency_key!r} vanished")
            if existing.request_fingerprint != digest:
                raise IdempotencyConflict(idempotency_key)
            return existing, False
        uow.emit(
            Envelope(
                type=MessageType.ORDER_CREATED.value,
                saga_id=order.saga_id,
                order_id=order.id,
                correlation_id=correlation_id,
                source=SOURCE,
                payload=OrderCreated(
                    customer_id=order.customer_id,
                    items=[
                        ItemLine(product_id=i.product_id, quantity=i.quantity, price=i.price)
                        for i in order.items
                    ],
                    total_amount=order.total_amount,
                    shipping_address=body.shipping_address,
                ).model_dump(mode="json"),
            )
        )
        await uow.commit()
    log.info(
        "order %s placed by customer %s: %d line(s), total %s, saga %s",
        order.id,
        order.customer_id,
        len(order.items),
        order.total_amount,
        order.saga_id,
    )
    return order, True


async def apply_status_event(rt: Runtime[Settings], envelope: Envelope) -> None:
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
