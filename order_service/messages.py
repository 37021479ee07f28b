"""The envelope the order service sends: `order.created`, which starts the saga."""

from __future__ import annotations

from order_service.domain import Order
from shared_domain.contracts import Address, Envelope, ItemLine, MessageType, OrderCreated

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
