"""Use cases the API invokes: open a unit of work, load, call the domain, save, emit,
commit."""

from __future__ import annotations

import hashlib
import logging

from order_service import repository
from order_service.domain import Order, OrderLine
from order_service.messages import order_created
from order_service.schemas import PlaceOrder
from order_service.settings import Settings
from shared_domain.contracts import utcnow
from shared_domain.runtime import Runtime

log = logging.getLogger(__name__)


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
            existing = await repository.by_idempotency_key(
                uow.conn, body.customer_id, idempotency_key
            )
            if existing is None:  # the key's holder committed it (or we would have inserted)
                raise RuntimeError(f"order with Idempotency-Key {idempotency_key!r} vanished")
            if existing.request_fingerprint != digest:
                raise IdempotencyConflict(idempotency_key)
            return existing, False
        uow.emit(order_created(order, body.shipping_address, correlation_id))
        await uow.commit()
    log.info(
        "order %s placed by customer %s: %d line(s), total %s, saga %s",
        order.id,
        order.customer_id,
        len(order.items),
        order.total_amount,
        order.saga_id,
        extra={
            "order_id": str(order.id),
            "saga_id": str(order.saga_id),
            "correlation_id": correlation_id,
        },
    )
    return order, True
