"""Exchanges and queues. Every service declares all of it, so no message is ever
published to a routing key that no queue is bound to yet.

For each consuming queue `<q>`:
- `<q>` is durable and dead-letters to `saga.dlx` with routing key `<q>`;
- `<q>.dlq` holds its dead letters (bound to `saga.dlx` with key `<q>`);
- `<q>.retry` holds messages waiting out a backoff delay (per-message TTL); when the
  TTL expires the broker dead-letters them back into `<q>` through the default exchange.
"""

from __future__ import annotations

from dataclasses import dataclass

import aio_pika
from aio_pika.abc import AbstractChannel

from shared_domain.contracts import COMMANDS_EXCHANGE, EVENTS_EXCHANGE, MessageType

DEAD_LETTER_EXCHANGE = "saga.dlx"


@dataclass(frozen=True)
class QueueSpec:
    name: str
    exchange: str
    routing_keys: tuple[str, ...]

    @property
    def dlq(self) -> str:
        return f"{self.name}.dlq"

    @property
    def retry(self) -> str:
        return f"{self.name}.retry"


def _keys(*types: MessageType) -> tuple[str, ...]:
    return tuple(t.value for t in types)


PAYMENT_COMMANDS = QueueSpec(
    "payment_service.commands",
    COMMANDS_EXCHANGE,
    _keys(MessageType.PAYMENT_PROCESS, MessageType.PAYMENT_REFUND),
)
INVENTORY_COMMANDS = QueueSpec(
    "inventory_service.commands",
    COMMANDS_EXCHANGE,
    _keys(MessageType.INVENTORY_RESERVE, MessageType.INVENTORY_RELEASE),
)
SHIPPING_COMMANDS = QueueSpec(
    "shipping_service.commands",
    COMMANDS_EXCHANGE,
    _keys(MessageType.SHIPPING_CREATE, MessageType.SHIPPING_CANCEL),
)
NOTIFICATION_COMMANDS = QueueSpec(
    "notification_service.commands",
    COMMANDS_EXCHANGE,
    _keys(MessageType.NOTIFICATION_SEND),
)
ORCHESTRATOR_EVENTS = QueueSpec(
    "saga_orchestrator.events",
    EVENTS_EXCHANGE,
    ("order.created", "payment.*", "inventory.*", "shipping.*", "notification.*"),
)
ORDER_EVENTS = QueueSpec(
    "order_service.events",
    EVENTS_EXCHANGE,
    _keys(
        MessageType.ORDER_PROCESSING,
        MessageType.ORDER_COMPLETED,
        MessageType.ORDER_CANCELLED,
        MessageType.ORDER_FAILED,
    ),
)

ALL_QUEUES: tuple[QueueSpec, ...] = (
    PAYMENT_COMMANDS,
    INVENTORY_COMMANDS,
    SHIPPING_COMMANDS,
    NOTIFICATION_COMMANDS,
    ORCHESTRATOR_EVENTS,
    ORDER_EVENTS,
)


async def declare_topology(channel: AbstractChannel) -> None:
    for name in (COMMANDS_EXCHANGE, EVENTS_EXCHANGE):
        await channel.declare_exchange(name, aio_pika.ExchangeType.TOPIC, durable=True)
    dlx = await channel.declare_exchange(
        DEAD_LETTER_EXCHANGE, aio_pika.ExchangeType.DIRECT, durable=True
    )
    for spec in ALL_QUEUES:
        queue = await channel.declare_queue(
            spec.name,
            durable=True,
            arguments={
                "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
                "x-dead-letter-routing-key": spec.name,
            },
        )
        for key in spec.routing_keys:
            await queue.bind(spec.exchange, routing_key=key)
        dlq = await channel.declare_queue(spec.dlq, durable=True)
        await dlq.bind(dlx, routing_key=spec.name)
        await channel.declare_queue(
            spec.retry,
            durable=True,
            arguments={
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": spec.name,
            },
        )
