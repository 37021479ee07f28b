from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aio_pika
import pytest
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection

from inventory_service.app import SERVICE as INVENTORY
from inventory_service.settings import Settings as InventorySettings
from notification_service.app import SERVICE as NOTIFICATION
from notification_service.settings import Settings as NotificationSettings
from order_service.app import SERVICE as ORDER
from order_service.schemas import PlaceOrder
from order_service.settings import Settings as OrderSettings
from payment_service.app import SERVICE as PAYMENT
from payment_service.settings import Settings as PaymentSettings
from saga_orchestrator import repository as saga_repository
from saga_orchestrator.app import SERVICE as ORCHESTRATOR
from saga_orchestrator.domain import Saga
from saga_orchestrator.settings import Settings as OrchestratorSettings
from shared_domain import migrations
from shared_domain.contracts import PAYLOADS, Envelope, MessageType, utcnow
from shared_domain.db import create_engine
from shared_domain.messaging.consumer import Handler
from shared_domain.runtime import Runtime, ServiceDefinition, ensure_database, seed
from shared_domain.settings import ServiceSettings
from shipping_service.app import SERVICE as SHIPPING
from shipping_service.settings import Settings as ShippingSettings

pytestmark = pytest.mark.integration


@dataclass
class Captured:
    """Messages that reached a throw-away queue bound to an exchange."""

    messages: asyncio.Queue[AbstractIncomingMessage]

    async def next(self, timeout: float = 5.0) -> AbstractIncomingMessage:
        return await asyncio.wait_for(self.messages.get(), timeout)

    async def next_json(self, timeout: float = 5.0) -> dict[str, Any]:
        return json.loads((await self.next(timeout)).body)

    async def nothing_within(self, seconds: float) -> bool:
        """Whether no message comes within `seconds`; one that comes stays for `next`."""
        try:
            message = await asyncio.wait_for(self.messages.get(), seconds)
        except TimeoutError:
            return True
        self.messages.put_nowait(message)  # back for `next` (behind any that came since)
        return False


@pytest.fixture
async def amqp(vhost: str) -> AsyncIterator[AbstractRobustConnection]:
    connection = await aio_pika.connect_robust(f"amqp://guest:guest@127.0.0.1:5672/{vhost}")
    yield connection
    await connection.close()


@pytest.fixture
async def channel(amqp: AbstractRobustConnection) -> AsyncIterator[AbstractChannel]:
    ch = await amqp.channel()
    yield ch
    await ch.close()


async def capture(channel: AbstractChannel, exchange: str, key: str = "#") -> Captured:
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    await queue.bind(exchange, routing_key=key)
    captured = Captured(asyncio.Queue())

    async def on_message(message: AbstractIncomingMessage) -> None:
        await message.ack()
        await captured.messages.put(message)

    await queue.consume(on_message)
    return captured


SAGAS = uuid.UUID("6f1c2a4e-9b7d-4e3f-8a5c-2d1e0f9b8a7c")


def saga_of(order_id: uuid.UUID) -> uuid.UUID:
    """The one saga of an order, as the orchestrator has it (the workers refuse a
    command for an order from any other)."""
    return uuid.uuid5(SAGAS, str(order_id))


def command(type_: MessageType, payload: dict[str, Any], order_id: uuid.UUID) -> Envelope:
    """A message of the saga for `order_id`, as the orchestrator would send it."""
    return Envelope(
        type=type_.value,
        saga_id=saga_of(order_id),
        order_id=order_id,
        correlation_id="t",
        source="test",
        payload=payload,
    )


async def deliver(handlers: Mapping[MessageType, Handler], message: Envelope) -> None:
    """Hand a message to its handler, as the consumer does once it has parsed it."""
    type_ = MessageType(message.type)
    await handlers[type_](message, PAYLOADS[type_].model_validate(message.payload))


async def open_runtime(
    definition: ServiceDefinition[Any],
    settings_cls: type[ServiceSettings],
    vhost: str,
    db_prefix: str,
    *,
    consuming: bool = False,
    **overrides: Any,
) -> Runtime[Any]:
    """A service runtime on its own freshly emptied database, broker connected; started
    as the service starts it (consumer, background loops) if `consuming`."""
    settings = settings_cls(
        DB_NAME=f"{db_prefix}{definition.name}",
        RABBITMQ_VHOST=vhost,
        OUTBOX_GRACE_PERIOD=0.3,
        OUTBOX_SWEEP_INTERVAL=0.1,
        RETRY_BASE_DELAY=0.05,
        MESSAGE_MAX_RETRIES=2,
        **overrides,
    )
    await ensure_database(settings)
    await asyncio.to_thread(migrations.upgrade, definition.name, settings.database_url())
    async with create_engine(settings).begin() as conn:
        tables = ", ".join(t.name for t in definition.metadata.sorted_tables)
        await conn.exec_driver_sql(f"TRUNCATE {tables} CASCADE")
    await seed(definition, settings)
    rt = Runtime(definition, settings)
    if consuming:
        await rt.start()
    else:
        await rt.open_database()
        await rt.broker.connect()
    return rt


@pytest.fixture
async def payment_rt(vhost: str, db_prefix: str) -> AsyncIterator[Runtime[PaymentSettings]]:
    rt = await open_runtime(PAYMENT, PaymentSettings, vhost, db_prefix)
    yield rt
    await rt.stop()


@pytest.fixture
async def order_rt(vhost: str, db_prefix: str) -> AsyncIterator[Runtime[OrderSettings]]:
    rt = await open_runtime(ORDER, OrderSettings, vhost, db_prefix)
    yield rt
    await rt.stop()


@pytest.fixture
async def inventory_rt(vhost: str, db_prefix: str) -> AsyncIterator[Runtime[InventorySettings]]:
    rt = await open_runtime(INVENTORY, InventorySettings, vhost, db_prefix)
    yield rt
    await rt.stop()


@pytest.fixture
async def shipping_rt(vhost: str, db_prefix: str) -> AsyncIterator[Runtime[ShippingSettings]]:
    rt = await open_runtime(SHIPPING, ShippingSettings, vhost, db_prefix, SHIPPING_FAILURE_RATE=0.0)
    yield rt
    await rt.stop()


@pytest.fixture
async def notification_rt(
    vhost: str, db_prefix: str
) -> AsyncIterator[Runtime[NotificationSettings]]:
    rt = await open_runtime(
        NOTIFICATION,
        NotificationSettings,
        vhost,
        db_prefix,
        NOTIFICATION_FAILURE_RATE=0.0,
        NOTIFICATION_RETRY_DELAY=0.01,
    )
    yield rt
    await rt.stop()


@pytest.fixture
async def orchestrator_rt(
    vhost: str, db_prefix: str
) -> AsyncIterator[Runtime[OrchestratorSettings]]:
    rt = await open_runtime(ORCHESTRATOR, OrchestratorSettings, vhost, db_prefix)
    yield rt
    await rt.stop()


def order_request(quantity: int = 1) -> PlaceOrder:
    """A valid order body, for a new customer, of one product line."""
    return PlaceOrder.model_validate(
        {
            "customer_id": str(uuid.uuid4()),
            "items": [{"product_id": str(uuid.uuid4()), "quantity": quantity, "price": "12.50"}],
            "shipping_address": {
                "street": "1 Main St",
                "city": "Springfield",
                "state": "IL",
                "zip_code": "62701",
                "country": "US",
            },
        }
    )


async def add_saga(rt: Runtime[OrchestratorSettings], started_at: datetime | None = None) -> Saga:
    """A saga started (at `started_at`, now by default) and stored, as order.created would."""
    saga = Saga(
        id=uuid.uuid4(),
        order_id=uuid.uuid4(),
        order={"customer_id": str(uuid.uuid4()), "items": [], "total_amount": "1.00"},
        correlation_id="t",
    )
    saga.start(started_at or utcnow(), rt.settings.saga_policy())
    async with rt.uow() as uow:
        assert await saga_repository.add(uow.conn, saga)
        await uow.commit()
    return saga
