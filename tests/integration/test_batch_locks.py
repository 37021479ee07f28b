"""Two replicas' batches over the same rows, against the real PostgreSQL: each service's
preload locks what a batch will change before its first handler, so batches that hold
the same rows in crossing order wait for each other instead of deadlocking.

The crossing is forced: each batch handles its first message, then waits (up to a
second) for the other batch to have handled its first too. Without the preload both
would then hold one row and want the other's."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

import asyncpg
import pytest

from inventory_service import handlers as inventory_handlers
from order_service import handlers as order_handlers
from order_service import services as order_services
from order_service.domain import OrderStatus
from saga_orchestrator import handlers as orchestrator_handlers
from saga_orchestrator import repository as saga_repository
from saga_orchestrator.domain import Saga, Step
from shared_domain.batching import Batcher, Preload
from shared_domain.contracts import PAYLOADS, Envelope, MessageType
from shared_domain.db import UnitOfWork
from shared_domain.messaging.consumer import Handler
from shared_domain.runtime import Runtime
from tests.integration.conftest import add_saga, order_request, saga_of

pytestmark = pytest.mark.integration

LAPTOP = uuid.UUID("550e8400-e29b-41d4-a716-446655440001")  # seeded with stock 50
MOUSE = uuid.UUID("550e8400-e29b-41d4-a716-446655440002")  # seeded with stock 100


def envelope(type_: MessageType, payload: dict[str, Any], **ids: Any) -> Envelope:
    order_id = ids.get("order_id", uuid.uuid4())
    return Envelope(
        type=type_.value,
        saga_id=ids.get("saga_id", saga_of(order_id)),
        order_id=order_id,
        causation_id=ids.get("causation_id"),
        correlation_id="batch-locks",
        source="test",
        payload=payload,
    )


async def crossing_batches(
    rt: Runtime[Any], handlers: Any, preload: Preload, first: list[Envelope], second: list[Envelope]
) -> list[BaseException]:
    """Handle `first` and `second` as one batch each, on two batchers (two replicas),
    with their first messages handled at the same time; the deadlocks PostgreSQL found."""
    deadlocks: list[BaseException] = []
    firsts = {first[0].message_id, second[0].message_id}
    arrived: set[uuid.UUID] = set()
    both = asyncio.Event()

    async def handle(env: Envelope, payload: Any) -> None:
        handler: Handler = handlers[MessageType(env.type)]
        try:
            await handler(env, payload)
        except asyncpg.DeadlockDetectedError as exc:
            deadlocks.append(exc)
            raise
        if env.message_id in firsts:
            arrived.add(env.message_id)
            if arrived == firsts:
                both.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(both.wait(), 1.0)

    def replica() -> Batcher:
        return Batcher(
            lambda: UnitOfWork(rt.pool, None, 0.3, begin_later=True),
            rt.relay.publish_committed,
            max_size=16,
            preload=preload,
        )

    replicas = [replica(), replica()]
    for b in replicas:
        b.start()
    try:

        async def run(b: Batcher, batch: list[Envelope]) -> None:
            await asyncio.gather(
                *(
                    b.run(handle, e, PAYLOADS[MessageType(e.type)].model_validate(e.payload))
                    for e in batch
                )
            )

        await asyncio.wait_for(
            asyncio.gather(run(replicas[0], first), run(replicas[1], second)), 30
        )
    finally:
        for b in replicas:
            await b.stop()
    return deadlocks


def reserve(product: uuid.UUID) -> Envelope:
    return envelope(
        MessageType.INVENTORY_RESERVE,
        {"items": [{"product_id": str(product), "quantity": 1, "price": "1.00"}]},
    )


async def stock(rt: Runtime[Any], product: uuid.UUID) -> tuple[int, int]:
    async with rt.uow() as uow:
        row = await uow.conn.fetchrow("SELECT stock, reserved FROM products WHERE id = $1", product)
    return row["stock"], row["reserved"]


async def test_inventory_batches_reserving_the_same_products_do_not_deadlock(
    inventory_rt,
) -> None:
    rt = inventory_rt
    handlers = inventory_handlers.build_handlers(rt)
    deadlocks = await crossing_batches(
        rt,
        handlers,
        inventory_handlers.preload,
        [reserve(MOUSE), reserve(LAPTOP)],
        [reserve(LAPTOP), reserve(MOUSE)],
    )
    assert deadlocks == []
    assert await stock(rt, LAPTOP) == (48, 2)
    assert await stock(rt, MOUSE) == (98, 2)


async def test_inventory_batches_releasing_the_same_products_do_not_deadlock(
    inventory_rt,
) -> None:
    """A release command names only its order: the preload finds the products through
    the reservation it gives back."""
    rt = inventory_rt
    handlers = inventory_handlers.build_handlers(rt)
    reserved = [reserve(MOUSE), reserve(LAPTOP), reserve(LAPTOP), reserve(MOUSE)]
    for e in reserved:
        await handlers[MessageType.INVENTORY_RESERVE](
            e, PAYLOADS[MessageType.INVENTORY_RESERVE].model_validate(e.payload)
        )
    releases = [
        envelope(MessageType.INVENTORY_RELEASE, {"reason": "test"}, order_id=e.order_id)
        for e in reserved
    ]
    deadlocks = await crossing_batches(
        rt, handlers, inventory_handlers.preload, releases[:2], releases[2:]
    )
    assert deadlocks == []
    assert await stock(rt, LAPTOP) == (50, 0)
    assert await stock(rt, MOUSE) == (100, 0)


async def test_the_inventory_preload_locks_what_the_batch_changes(inventory_rt) -> None:
    rt = inventory_rt
    handlers = inventory_handlers.build_handlers(rt)
    taken = reserve(MOUSE)
    await handlers[MessageType.INVENTORY_RESERVE](
        taken, PAYLOADS[MessageType.INVENTORY_RESERVE].model_validate(taken.payload)
    )
    release = envelope(MessageType.INVENTORY_RELEASE, {"reason": "test"}, order_id=taken.order_id)
    batch = [reserve(LAPTOP), release]
    async with UnitOfWork(rt.pool, None, 0.3) as uow:
        await inventory_handlers.preload(
            uow, [(e, PAYLOADS[MessageType(e.type)].model_validate(e.payload)) for e in batch]
        )
        async with rt.pool.acquire() as other:
            for statement, key in (
                ("SELECT 1 FROM products WHERE id = $1 FOR UPDATE NOWAIT", LAPTOP),
                ("SELECT 1 FROM products WHERE id = $1 FOR UPDATE NOWAIT", MOUSE),
                (
                    "SELECT 1 FROM reservations WHERE order_id = $1 FOR UPDATE NOWAIT",
                    taken.order_id,
                ),
            ):
                with pytest.raises(asyncpg.LockNotAvailableError):
                    await other.execute(statement, key)
            keyboard = uuid.UUID("550e8400-e29b-41d4-a716-446655440003")
            await other.execute("SELECT 1 FROM products WHERE id = $1 FOR UPDATE NOWAIT", keyboard)


async def test_order_batches_moving_the_same_orders_do_not_deadlock(order_rt) -> None:
    rt = order_rt
    (one, _), (two, _) = [
        await order_services.place_order(rt, order_request(), None, "t") for _ in range(2)
    ]
    processing, completed = MessageType.ORDER_PROCESSING, MessageType.ORDER_COMPLETED
    done = {"notification_failed": False}
    deadlocks = await crossing_batches(
        rt,
        order_handlers.build_handlers(rt),
        order_handlers.preload,
        [
            envelope(processing, {}, order_id=one.id, saga_id=one.saga_id),
            envelope(completed, done, order_id=two.id, saga_id=two.saga_id),
        ],
        [
            envelope(processing, {}, order_id=two.id, saga_id=two.saga_id),
            envelope(completed, done, order_id=one.id, saga_id=one.saga_id),
        ],
    )
    assert deadlocks == []
    async with rt.uow() as uow:
        statuses = await uow.conn.fetch("SELECT status FROM orders")
    assert [r["status"] for r in statuses] == [OrderStatus.COMPLETED.value] * 2


async def test_orchestrator_batches_advancing_the_same_sagas_do_not_deadlock(
    orchestrator_rt,
) -> None:
    """Each batch pays one saga and fails the other's payment: whichever batch goes
    first decides each saga's fate, and both sagas move."""
    rt = orchestrator_rt
    one, two = await add_saga(rt), await add_saga(rt)
    paid = {"payment_id": str(uuid.uuid4()), "amount": "1.00", "provider_reference": "r"}
    declined = {"payment_id": None, "reason": "card_declined"}
    processed, failed = MessageType.PAYMENT_PROCESSED, MessageType.PAYMENT_FAILED

    def answering(saga: Saga) -> dict[str, Any]:  # a reply to the saga's charge
        charge = saga.steps[Step.PAYMENT].command_id
        return {"saga_id": saga.id, "order_id": saga.order_id, "causation_id": charge}

    deadlocks = await crossing_batches(
        rt,
        orchestrator_handlers.build_handlers(rt),
        orchestrator_handlers.preload,
        [
            envelope(processed, paid, **answering(one)),
            envelope(failed, declined, **answering(two)),
        ],
        [
            envelope(processed, paid, **answering(two)),
            envelope(failed, declined, **answering(one)),
        ],
    )
    assert deadlocks == []
    for saga in (one, two):
        async with rt.uow() as uow:
            stored = await saga_repository.get_for_update(uow.conn, saga.id)
            await uow.commit()
        assert stored is not None and stored.version > 1
