"""The order service's writes against the real PostgreSQL: an order and its status
history go in together, and an Idempotency-Key holds under concurrent requests."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

import pytest

from order_service import handlers, key_retention, services
from order_service.domain import OrderStatus
from shared_domain.contracts import Envelope, MessageType
from tests.integration.conftest import order_request

pytestmark = pytest.mark.integration


async def history(rt, order_id: uuid.UUID) -> list[tuple[str, str | None]]:
    async with rt.uow() as uow:
        rows = await uow.conn.fetch(
            "SELECT status, reason FROM order_status_history WHERE order_id = $1 ORDER BY id",
            order_id,
        )
    return [(r["status"], r["reason"]) for r in rows]


async def test_concurrent_requests_with_one_key_place_one_order(order_rt) -> None:
    body, key = order_request(), f"checkout-{uuid.uuid4()}"
    results = await asyncio.gather(
        *(services.place_order(order_rt, body, key, "t") for _ in range(8))
    )
    ids = {order.id for order, _ in results}
    assert len(ids) == 1
    assert sorted(created for _, created in results) == [False] * 7 + [True]
    async with order_rt.uow() as uow:
        assert await uow.conn.fetchval("SELECT count(*) FROM orders") == 1
        assert await uow.conn.fetchval("SELECT count(*) FROM outbox") <= 1  # cleaner may run
    assert await history(order_rt, ids.pop()) == [(OrderStatus.PENDING.value, "order placed")]


async def test_a_key_reused_with_another_body_is_a_conflict_and_stores_nothing(
    order_rt,
) -> None:
    key, body = f"checkout-{uuid.uuid4()}", order_request(1)
    first, created = await services.place_order(order_rt, body, key, "t")
    assert created
    other = order_request(2).model_copy(update={"customer_id": body.customer_id})
    with pytest.raises(services.IdempotencyConflict):
        await services.place_order(order_rt, other, key, "t")
    async with order_rt.uow() as uow:
        assert await uow.conn.fetchval("SELECT count(*) FROM orders") == 1
        assert await uow.conn.fetchval("SELECT count(*) FROM order_status_history") == 1
    assert first.total_amount == Decimal("12.50")


async def test_a_key_is_the_customers_own(order_rt) -> None:
    """Two customers who happen to send the same key each get their own order: neither
    is told of, or given, the other's."""
    key, my_body, their_body = f"checkout-{uuid.uuid4()}", order_request(1), order_request(2)
    mine, created = await services.place_order(order_rt, my_body, key, "t")
    theirs, also_created = await services.place_order(order_rt, their_body, key, "t")
    assert created and also_created
    assert mine.id != theirs.id and mine.customer_id != theirs.customer_id
    again, created_again = await services.place_order(order_rt, their_body, key, "t")
    assert (again.id, created_again) == (theirs.id, False)


async def test_a_key_past_its_retention_is_let_go_and_places_a_new_order(order_rt) -> None:
    key, body = f"checkout-{uuid.uuid4()}", order_request(1)
    first, _ = await services.place_order(order_rt, body, key, "t")
    recent, _ = await services.place_order(order_rt, order_request(1), key, "t")
    retention = order_rt.settings.idempotency_key_retention
    async with order_rt.uow() as uow:  # the first order was placed longer ago than that
        await uow.conn.execute(
            "UPDATE orders SET created_at = created_at - make_interval(secs => $2) WHERE id = $1",
            first.id,
            retention + 60,
        )
        await uow.commit()
    assert await key_retention.forget_old_keys(order_rt) == 1
    async with order_rt.uow() as uow:
        kept = await uow.conn.fetch("SELECT id, idempotency_key FROM orders ORDER BY created_at")
    assert [(r["id"], r["idempotency_key"]) for r in kept] == [(first.id, None), (recent.id, key)]
    second, created = await services.place_order(order_rt, body, key, "t")
    assert created and second.id != first.id, "the same key now places a new order"


async def test_status_events_update_the_order_and_append_its_history(order_rt) -> None:
    order, _ = await services.place_order(order_rt, order_request(), None, "t")

    def event(type_: MessageType, payload: dict) -> Envelope:
        return Envelope(
            type=type_.value,
            saga_id=order.saga_id,
            order_id=order.id,
            correlation_id="t",
            source="test",
            payload=payload,
        )

    on_status = handlers.build_handlers(order_rt)
    await on_status[MessageType.ORDER_PROCESSING](event(MessageType.ORDER_PROCESSING, {}), None)
    failed = event(MessageType.ORDER_FAILED, {"reason": "payment_declined"})
    await on_status[MessageType.ORDER_FAILED](failed, None)
    await on_status[MessageType.ORDER_FAILED](failed, None)  # a redelivery changes nothing
    assert await history(order_rt, order.id) == [
        (OrderStatus.PENDING.value, "order placed"),
        (OrderStatus.PROCESSING.value, None),
        (OrderStatus.FAILED.value, "payment_declined"),
    ]
    async with order_rt.uow() as uow:
        row = await uow.conn.fetchrow(
            "SELECT status, failure_reason FROM orders WHERE id = $1", order.id
        )
    assert (row["status"], row["failure_reason"]) == (OrderStatus.FAILED.value, "payment_declined")
