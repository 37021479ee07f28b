"""Service handlers against the real database: stock never goes negative under
concurrency, a reservation is all or nothing, a refund failure is reported, and an undo
that meets its command's outcome recorded meanwhile still undoes it. The
idempotency contract every worker keeps is in test_worker_idempotency.py."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from inventory_service import handlers as inventory_handlers
from inventory_service import views as inventory_views
from payment_service import handlers as payment_handlers
from payment_service import repository as payment_repository
from payment_service import views as payment_views
from payment_service.provider import SimulatedProvider
from scripts.sample import ADDRESS
from shared_domain.contracts import (
    EVENTS_EXCHANGE,
    Envelope,
    MessageType,
)
from shipping_service import handlers as shipping_handlers
from shipping_service import repository as shipping_repository
from shipping_service import views as shipping_views
from tests.integration.conftest import capture, command, deliver

pytestmark = pytest.mark.integration

LAPTOP = uuid.UUID("550e8400-e29b-41d4-a716-446655440001")  # seeded with stock 50


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
    product = await inventory_views.product(inventory_rt.engine, LAPTOP)
    assert product is not None
    assert outcomes.count("inventory.reserved") == 16  # 16 * 3 = 48 <= 50 < 51
    assert outcomes.count("inventory.failed") == 14
    assert (product["stock"], product["reserved"]) == (2, 48)


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
    mouse_after = await inventory_views.product(inventory_rt.engine, mouse)
    assert mouse_after is not None and (mouse_after["stock"], mouse_after["reserved"]) == (100, 0)

    await deliver(
        handlers,
        command(
            MessageType.INVENTORY_RESERVE,
            {"items": [{"product_id": str(uuid.uuid4()), "quantity": 1, "price": "1.00"}]},
            uuid.uuid4(),
        ),
    )
    assert (await replies.next_json())["payload"]["reason"] == "unknown_product"


async def test_a_refund_that_meets_a_charge_recorded_meanwhile_is_retried_and_refunds_it(
    payment_rt, channel, monkeypatch
):
    """The refund looked before the charge was recorded (its look-up sees nothing) and
    then finds the charge as it writes its tombstone: it is retried, and refunds."""
    replies = await capture(channel, EVENTS_EXCHANGE, "payment.*")
    handlers = payment_handlers.build_handlers(payment_rt, SimulatedProvider(0.0))
    order_id = uuid.uuid4()
    await deliver(handlers, charge(order_id, "5.00"))
    refund = command(MessageType.PAYMENT_REFUND, {"reason": "timed out"}, order_id)

    async def looked_too_early(conn, order_id):
        return None

    monkeypatch.setattr(payment_repository, "find", looked_too_early)
    with pytest.raises(payment_handlers.RecordedConcurrently):
        await deliver(handlers, refund)
    monkeypatch.undo()
    await deliver(handlers, refund)  # the consumer's retry

    assert (await replies.next_json())["type"] == "payment.processed"
    refunded = await replies.next_json()
    assert (refunded["type"], refunded["payload"]["amount"]) == ("payment.refunded", "5.00")
    assert await replies.nothing_within(0.3)  # the first try emitted nothing
    payment = await payment_views.payment_for_order(payment_rt.engine, order_id)
    assert payment is not None and payment["status"] == "refunded"


async def test_a_cancel_that_meets_a_booking_recorded_meanwhile_cancels_it(
    shipping_rt, channel, monkeypatch
):
    """The cancel found no shipment and then meets the booking as it writes its
    tombstone: it cancels the booking instead."""
    replies = await capture(channel, EVENTS_EXCHANGE, "shipping.*")
    handlers = shipping_handlers.build_handlers(shipping_rt)
    order_id = uuid.uuid4()
    create = command(
        MessageType.SHIPPING_CREATE,
        {
            "items": [{"product_id": str(LAPTOP), "quantity": 1, "price": "1.00"}],
            "shipping_address": ADDRESS,
        },
        order_id,
    )
    await deliver(handlers, create)

    real_lock = shipping_repository.get_for_update
    calls = []

    async def locked_too_early(conn, order_id):
        calls.append(order_id)
        return None if len(calls) == 1 else await real_lock(conn, order_id)

    monkeypatch.setattr(shipping_repository, "get_for_update", locked_too_early)
    await deliver(handlers, command(MessageType.SHIPPING_CANCEL, {"reason": "x"}, order_id))

    created, cancelled = await replies.next_json(), await replies.next_json()
    assert (created["type"], cancelled["type"]) == ("shipping.created", "shipping.cancelled")
    assert cancelled["payload"]["shipment_id"] == created["payload"]["shipment_id"]
    shipment = await shipping_views.shipment_for_order(shipping_rt.engine, order_id)
    assert shipment is not None and shipment["status"] == "cancelled"
