"""Exchanges and queues. Every service declares all of it, so no message is ever
published to a routing key that no queue is bound to yet.

For each consuming queue `<q>`:
- `<q>` is durable and dead-letters to `saga.dlx` with routing key `<q>`;
- `<q>.dlq` holds its dead letters (bound to `saga.dlx` with key `<q>`);
- `<q>.retry` holds messages waiting out a backoff delay (per-message TTL); when the
  TTL expires the broker dead-letters them back into `<q>` through the default exchange.

The queues are the same in both saga styles; what each is bound to is not (a
`Bindings`, from shared_domain.choreography.bindings). A process binds its style's and
unbinds every other style's, so a deployment switched from one style to the other
leaves no queue collecting messages that no one will handle.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
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


# A binding: (exchange, routing key).
Binding = tuple[str, str]
# What each queue is bound to, by queue name.
Bindings = Mapping[str, frozenset[Binding]]


def orchestration_bindings() -> dict[str, frozenset[Binding]]:
    return {q.name: frozenset((q.exchange, k) for k in q.routing_keys) for q in ALL_QUEUES}


async def declare_topology(
    channel: AbstractChannel,
    bindings: Bindings | None = None,
    unbind: Mapping[str, Iterable[Binding]] | None = None,
) -> None:
    """Declare everything, bind each queue as `bindings` says (default: orchestration's)
    and remove its `unbind` bindings (another style's)."""
    bindings = bindings or orchestration_bindings()
    unbind = unbind or {}
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
        wanted = bindings.get(spec.name, frozenset())
        for exchange, key in sorted(wanted):
            await queue.bind(exchange, routing_key=key)
        for exchange, key in sorted(set(unbind.get(spec.name, ())) - wanted):
            await queue.unbind(exchange, routing_key=key)
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
