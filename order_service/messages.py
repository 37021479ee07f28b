"""The envelopes the order service sends: `order.created`, which starts the saga, and
in choreography `order.cancelled`, on which the customer is told, the unwind of a saga
with no outcome in time, and `order.failed` when even the unwind gets none."""

from __future__ import annotations

from order_service.domain import Order
from shared_domain.contracts import (
    Address,
    CancelShipment,
    Envelope,
    ItemLine,
    MessageType,
    OrderCancelled,
    OrderCreated,
    OrderFailed,
)

SOURCE = "order_service"


def order_created(order: Order, address: Address, correlation_id: str) -> Envelope:
    return Envelope(
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
            shipping_address=address,
        ).model_dump(mode="json"),
    )


def order_cancelled(order: Order, cause: Envelope) -> Envelope:
    return cause.follow(
        MessageType.ORDER_CANCELLED,
        OrderCancelled(reason=order.failure_reason or "cancelled", customer_id=order.customer_id),
        SOURCE,
    )


def unwind(order: Order, reason: str) -> Envelope:
    """Choreography: undo a saga that had no outcome in time from its last critical step
    back (`shipping.cancel`; each undo's event starts the one before it)."""
    return _about(order, MessageType.SHIPPING_CANCEL, CancelShipment(reason=reason))


def given_up(order: Order, reason: str) -> Envelope:
    """Choreography: the order ended failed with no outcome of its unwind; the observer
    hears it (its saga view would otherwise wait for that outcome for ever)."""
    return _about(order, MessageType.ORDER_FAILED, OrderFailed(reason=reason))


def _about(order: Order, type_: MessageType, payload: CancelShipment | OrderFailed) -> Envelope:
    """A message the order service sends of its own accord (no message caused it)."""
    return Envelope(
        type=type_.value,
        saga_id=order.saga_id,
        order_id=order.id,
        correlation_id=str(order.saga_id),
        source=SOURCE,
        payload=payload.model_dump(mode="json"),
    )
