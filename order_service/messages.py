"""The envelopes the order service sends: `order.created`, which starts the saga, and
in choreography `order.cancelled`, on which the customer is told."""

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
    return Envelope(
        type=MessageType.SHIPPING_CANCEL.value,
        saga_id=order.saga_id,
        order_id=order.id,
        correlation_id=str(order.saga_id),
        source=SOURCE,
        payload=CancelShipment(reason=reason).model_dump(mode="json"),
    )
