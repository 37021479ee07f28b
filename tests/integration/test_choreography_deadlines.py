"""The order service's saga deadline in choreography, against the real PostgreSQL and
RabbitMQ: a saga with no outcome in time is unwound once (`shipping.cancel` from the
order service), and failed if the unwind has no outcome in time either (`order.failed`,
for the observer)."""

from __future__ import annotations

import asyncio
import json

import pytest
from aio_pika.abc import AbstractChannel

from order_service import deadlines, services
from order_service.app import SERVICE as ORDER
from order_service.domain import OrderStatus
from order_service.settings import Settings as OrderSettings
from shared_domain.contracts import COMMANDS_EXCHANGE, EVENTS_EXCHANGE, utcnow
from tests.integration.conftest import capture, open_runtime, order_request

pytestmark = pytest.mark.integration


async def test_an_overdue_saga_is_unwound_once_then_failed(
    vhost: str, db_prefix: str, channel: AbstractChannel
) -> None:
    rt = await open_runtime(
        ORDER, OrderSettings, vhost, db_prefix, SAGA_MODE="choreography", SAGA_DEADLINE_SECONDS=1
    )
    try:
        sent = await capture(channel, COMMANDS_EXCHANGE)
        told = await capture(channel, EVENTS_EXCHANGE, "order.failed")
        order, _ = await services.place_order(rt, order_request(), None, "t")
        assert await deadlines.fire_due(rt) == 0, "not due yet"
        await asyncio.sleep(1.1)

        assert await deadlines.fire_due(rt) == 1
        unwind = json.loads((await sent.next()).body)
        assert (unwind["type"], unwind["source"]) == ("shipping.cancel", "order_service")
        assert (unwind["order_id"], unwind["saga_id"]) == (str(order.id), str(order.saga_id))
        assert unwind["payload"]["reason"] == "no outcome within 1s of the order: unwound"
        assert await deadlines.fire_due(rt) == 0, "unwound once, then waited for"
        async with rt.uow() as uow:
            row = await uow.conn.fetchrow("SELECT * FROM orders WHERE id = $1", order.id)
        assert row["status"] == OrderStatus.PENDING.value and row["unwound_at"] <= utcnow()

        await asyncio.sleep(1.1)
        assert await deadlines.fire_due(rt) == 1
        assert await sent.nothing_within(0.5), "no second unwind"
        async with rt.uow() as uow:
            row = await uow.conn.fetchrow("SELECT * FROM orders WHERE id = $1", order.id)
        assert row["status"] == OrderStatus.FAILED.value
        assert "of unwinding its saga" in row["failure_reason"]
        failed = json.loads((await told.next()).body)
        assert (failed["type"], failed["source"]) == ("order.failed", "order_service")
        assert failed["saga_id"] == str(order.saga_id)
        assert failed["payload"]["reason"] == row["failure_reason"]
        assert await deadlines.fire_due(rt) == 0, "an ended order has no deadline"
    finally:
        await rt.stop()


async def test_orchestration_keeps_no_deadline_in_the_order_service(
    vhost: str, db_prefix: str
) -> None:
    rt = await open_runtime(ORDER, OrderSettings, vhost, db_prefix, SAGA_DEADLINE_SECONDS=1)
    try:
        stop = asyncio.Event()
        await services.place_order(rt, order_request(), None, "t")
        await asyncio.sleep(1.1)
        # the watcher returns at once: the orchestrator keeps each step's deadline
        await asyncio.wait_for(deadlines.watch_deadlines(rt, stop), timeout=1)
        async with rt.uow() as uow:
            assert (
                await uow.conn.fetchval("SELECT count(*) FROM orders WHERE unwound_at IS NOT NULL")
                == 0
            )
    finally:
        await rt.stop()
