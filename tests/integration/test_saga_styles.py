"""The saga style a deployment runs, against the real RabbitMQ: a process of another
style refuses to start and changes nothing, and a process switched to another style
binds the queues for it and unbinds the old style's."""

from __future__ import annotations

import asyncio
import uuid

import aio_pika
import aiormq.exceptions
import pytest
from aio_pika.abc import AbstractChannel, AbstractRobustConnection

from inventory_service.app import SERVICE as INVENTORY
from inventory_service.settings import Settings as InventorySettings
from payment_service.app import SERVICE as PAYMENT
from payment_service.settings import Settings as PaymentSettings
from shared_domain.contracts import COMMANDS_EXCHANGE, EVENTS_EXCHANGE
from shared_domain.messaging.topology import PAYMENT_COMMANDS
from shared_domain.runtime import Runtime
from tests.integration.conftest import open_runtime

pytestmark = pytest.mark.integration


async def depth(amqp: AbstractRobustConnection, queue: str) -> int:
    # a channel of its own: a robust channel answers a repeated declare from its cache
    channel = await amqp.channel()
    try:
        declared = await channel.declare_queue(queue, passive=True)
        return declared.declaration_result.message_count or 0
    finally:
        await channel.close()


async def lands(
    amqp: AbstractRobustConnection, channel: AbstractChannel, exchange: str, key: str
) -> bool:
    """Whether a message published with `key` reaches the payment service's queue
    (nothing consumes it in these tests: its depth tells)."""
    before = await depth(amqp, PAYMENT_COMMANDS.name)
    target = await channel.get_exchange(exchange)
    await target.publish(aio_pika.Message(b"{}", message_id=str(uuid.uuid4())), routing_key=key)
    for _ in range(25):
        if await depth(amqp, PAYMENT_COMMANDS.name) > before:
            return True
        await asyncio.sleep(0.02)
    return False


async def test_another_style_refuses_to_start_and_a_switch_rebinds(
    vhost: str, db_prefix: str, amqp: AbstractRobustConnection, channel: AbstractChannel
) -> None:
    choreographed = await open_runtime(
        PAYMENT, PaymentSettings, vhost, db_prefix, SAGA_MODE="choreography"
    )
    try:
        await (await channel.declare_queue(PAYMENT_COMMANDS.name, passive=True)).purge()
        assert await lands(amqp, channel, EVENTS_EXCHANGE, "order.created")
        assert not await lands(amqp, channel, COMMANDS_EXCHANGE, "payment.process")

        # the pool opens no connection before the broker is reached: no database needed
        other = Runtime(INVENTORY, InventorySettings(RABBITMQ_VHOST=vhost, STARTUP_TIMEOUT=5))
        try:
            with pytest.raises(SystemExit) as refused:
                await other.start()
        finally:
            await other.stop()
        said = str(refused.value)
        assert said.startswith("inventory_service: refusing to start: this process runs ")
        assert "SAGA_MODE=orchestration, but 1 process(es) on this broker run " in said
        assert "SAGA_MODE=choreography" in said
        # it left the bindings as they were, and no marker of its style
        assert await lands(amqp, channel, EVENTS_EXCHANGE, "order.created")
        probe = await amqp.channel()  # a passive declare of a missing queue closes it
        with pytest.raises(aiormq.exceptions.ChannelNotFoundEntity):
            await probe.declare_queue("saga.style.orchestration", passive=True)
    finally:
        await choreographed.stop()

    orchestrated = await open_runtime(PAYMENT, PaymentSettings, vhost, db_prefix)
    try:
        await (await channel.declare_queue(PAYMENT_COMMANDS.name, passive=True)).purge()
        assert await lands(amqp, channel, COMMANDS_EXCHANGE, "payment.process")
        assert not await lands(amqp, channel, EVENTS_EXCHANGE, "order.created"), "unbound again"
    finally:
        await orchestrated.stop()
        await (await channel.declare_queue(PAYMENT_COMMANDS.name, passive=True)).purge()
