"""Service handlers against the real database: idempotent by business key, a duplicate
command re-emits the recorded outcome, and stock never goes negative under concurrency."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select

from inventory_service import handlers as inventory_handlers
from inventory_service import repository as inventory_repo
from payment_service import handlers as payment_handlers
from payment_service.provider import SimulatedProvider
from payment_service.tables import payments
from shared_domain.contracts import (
    EVENTS_EXCHANGE,
    PAYLOADS,
    Envelope,
    MessageType,
)
from tests.integration.conftest import capture

pytestmark = pytest.mark.integration

LAPTOP = uuid.UUID("550e8400-e29b-41d4-a716-446655440001")  # seeded with stock 50


def command(type_: MessageType, payload: dict[str, Any], order_id: uuid.UUID) -> Envelope:
    return Envelope(
        type=type_.value,
        saga_id=uuid.uuid4(),
        order_id=order_id,
        correlation_id="t",
        source="test",
        payload=payload,
    )


async def deliver(handlers: Any, envelope: Envelope) -> None:
    type_ = MessageType(envelope.type)
    await handlers[type_](envelope, PAYLOADS[type_].model_validate(envelope.payload))


async def test_duplicate_payment_command_charges_once_and_re_emits_the_outcome(payment_rt, channel):
    replies = await capture(channel, EVENTS_EXCHANGE, "payment.*")
    handlers = payment_handlers.build_handlers(payment_rt, SimulatedProvider(0.0))
    order_id = uuid.uuid4()
    process = charge(order_id, "99.95")

    await deliver(handlers, process)
    await deliver(handlers, process)  # redelivered
    await deliver(handlers, process.model_copy(update={"message_id": uuid.uuid4()}))  # re-sent

    first, second, third = [await replies.next_json() for _ in range(3)]
    assert {r["type"] for r in (first, second, third)} == {"payment.processed"}
    assert (
        first["payload"]["payment_id"]
        == second["payload"]["payment_id"]
        == third["payload"]["payment_id"]
    )
    assert first["payload"]["amount"] == "99.95"
    assert first["causation_id"] == str(process.message_id)
    async with payment_rt.engine.connect() as conn:
        count = (
            await conn.execute(
                select(func.count()).select_from(payments).where(payments.c.order_id == order_id)
            )
        ).scalar_one()
    assert count == 1


async def test_concurrent_duplicate_payment_commands_leave_one_payment(payment_rt, channel):
    handlers = payment_handlers.build_handlers(payment_rt, SimulatedProvider(0.0))
    order_id = uuid.uuid4()
    process = charge(order_id, "10.00")
    results = await asyncio.gather(
        *(
            deliver(handlers, process.model_copy(update={"message_id": uuid.uuid4()}))
            for _ in range(5)
        ),
        return_exceptions=True,
    )
    # A loser of the race hits the unique order_id; the consumer would retry it.
    assert any(r is None for r in results)
    async with payment_rt.engine.connect() as conn:
        rows = (await conn.execute(select(payments).where(payments.c.order_id == order_id))).all()
    assert len(rows) == 1 and rows[0].amount == Decimal("10.00")


async def test_refund_then_duplicate_refund_refunds_once(payment_rt, channel):
    replies = await capture(channel, EVENTS_EXCHANGE, "payment.refunded")
    handlers = payment_handlers.build_handlers(payment_rt, SimulatedProvider(0.0))
    order_id = uuid.uuid4()
    await deliver(
        handlers,
        charge(order_id, "20.00"),
    )
    refund = command(MessageType.PAYMENT_REFUND, {"reason": "inventory failed"}, order_id)
    await deliver(handlers, refund)
    await deliver(handlers, refund)
    first, second = await replies.next_json(), await replies.next_json()
    assert first["payload"]["amount"] == second["payload"]["amount"] == "20.00"
    async with payment_rt.engine.connect() as conn:
        status = (
            await conn.execute(select(payments.c.status).where(payments.c.order_id == order_id))
        ).scalar_one()
    assert status == "refunded"


async def test_refund_before_charge_leaves_a_tombstone_that_refuses_a_late_charge(
    payment_rt, channel
):
    replies = await capture(channel, EVENTS_EXCHANGE, "payment.*")
    handlers = payment_handlers.build_handlers(payment_rt, SimulatedProvider(0.0))
    order_id = uuid.uuid4()
    await deliver(handlers, command(MessageType.PAYMENT_REFUND, {"reason": "x"}, order_id))
    await deliver(
        handlers,
        charge(order_id, "5.00"),
    )
    refunded, late = await replies.next_json(), await replies.next_json()
    assert refunded["type"] == "payment.refunded" and refunded["payload"]["amount"] == "0.00"
    assert late["type"] == "payment.failed"


async def test_refund_failure_is_reported_not_swallowed(payment_rt, channel):
    replies = await capture(channel, EVENTS_EXCHANGE, "payment.*")
    handlers = payment_handlers.build_handlers(
        payment_rt, SimulatedProvider(0.0, refund_failure_rate=1.0)
    )
    order_id = uuid.uuid4()
    await deliver(
        handlers,
        charge(order_id, "5.00"),
    )
    await deliver(handlers, command(MessageType.PAYMENT_REFUND, {"reason": "x"}, order_id))
    assert (await replies.next_json())["type"] == "payment.processed"
    assert (await replies.next_json())["type"] == "payment.refund_failed"


def charge(order_id: uuid.UUID, amount: str) -> Envelope:
    return command(
        MessageType.PAYMENT_PROCESS, {"customer_id": str(uuid.uuid4()), "amount": amount}, order_id
    )


def reserve(order_id: uuid.UUID, quantity: int, product: uuid.UUID = LAPTOP) -> Envelope:
    return command(
        MessageType.INVENTORY_RESERVE,
        {"items": [{"product_id": str(product), "quantity": quantity, "price": "1299.99"}]},
        order_id,
    )


async def test_concurrent_reservations_never_oversell(inventory_rt, channel):
    replies = await capture(channel, EVENTS_EXCHANGE, "inventory.*")
    handlers = inventory_handlers.build_handlers(inventory_rt)
    await asyncio.gather(*(deliver(handlers, reserve(uuid.uuid4(), 3)) for _ in range(30)))
    outcomes = [(await replies.next_json())["type"] for _ in range(30)]
    product = await inventory_repo.get_product(inventory_rt.engine, LAPTOP)
    assert product is not None
    assert outcomes.count("inventory.reserved") == 16  # 16 * 3 = 48 <= 50 < 51
    assert outcomes.count("inventory.failed") == 14
    assert (product.stock, product.reserved) == (2, 48)


async def test_reservation_is_all_or_nothing(inventory_rt, channel):
    replies = await capture(channel, EVENTS_EXCHANGE, "inventory.*")
    handlers = inventory_handlers.build_handlers(inventory_rt)
    mouse = uuid.UUID("550e8400-e29b-41d4-a716-446655440002")
    order_id = uuid.uuid4()
    await deliver(
        handlers,
        command(
            MessageType.INVENTORY_RESERVE,
            {
                "items": [
                    {"product_id": str(mouse), "quantity": 10, "price": "49.99"},
                    {"product_id": str(LAPTOP), "quantity": 1000, "price": "1299.99"},
                ]
            },
            order_id,
        ),
    )
    reply = await replies.next_json()
    assert reply["type"] == "inventory.failed"
    assert reply["payload"]["reason"] == "insufficient_stock"
    assert reply["payload"]["product_id"] == str(LAPTOP)
    assert reply["payload"]["available"] == 50
    mouse_after = await inventory_repo.get_product(inventory_rt.engine, mouse)
    assert mouse_after is not None and (mouse_after.stock, mouse_after.reserved) == (100, 0)

    await deliver(
        handlers,
        command(
            MessageType.INVENTORY_RESERVE,
            {"items": [{"product_id": str(uuid.uuid4()), "quantity": 1, "price": "1.00"}]},
            uuid.uuid4(),
        ),
    )
    assert (await replies.next_json())["payload"]["reason"] == "unknown_product"


async def test_release_restores_stock_once(inventory_rt, channel):
    replies = await capture(channel, EVENTS_EXCHANGE, "inventory.*")
    handlers = inventory_handlers.build_handlers(inventory_rt)
    order_id = uuid.uuid4()
    await deliver(handlers, reserve(order_id, 5))
    release = command(MessageType.INVENTORY_RELEASE, {"reason": "shipping failed"}, order_id)
    await deliver(handlers, release)
    await deliver(handlers, release)
    types = [(await replies.next_json())["type"] for _ in range(3)]
    assert types == ["inventory.reserved", "inventory.released", "inventory.released"]
    product = await inventory_repo.get_product(inventory_rt.engine, LAPTOP)
    assert product is not None and (product.stock, product.reserved) == (50, 0)
