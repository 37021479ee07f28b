"""The deadline watcher against the real PostgreSQL and RabbitMQ: an overdue command is
re-sent only when nothing is queued on its way."""

from __future__ import annotations

import uuid
from datetime import timedelta

import aio_pika
import pytest

from saga_orchestrator import repository
from saga_orchestrator.domain import Step
from saga_orchestrator.timeouts import fire_due
from shared_domain.contracts import utcnow
from shared_domain.messaging.topology import ORCHESTRATOR_EVENTS, PAYMENT_COMMANDS
from tests.integration.conftest import add_saga

pytestmark = pytest.mark.integration


async def payment_sends(rt, saga_id: uuid.UUID) -> tuple[int, list[str]]:
    async with rt.uow() as uow:
        saga = await repository.get_for_update(uow.conn, saga_id)
        statuses = await uow.conn.fetch(
            "SELECT status FROM saga_history WHERE saga_id = $1 AND step = 'payment' ORDER BY id",
            saga_id,
        )
        await uow.commit()
    assert saga is not None
    return saga.steps[Step.PAYMENT].sends, [r["status"] for r in statuses]


async def test_an_overdue_command_still_queued_gets_no_copy(orchestrator_rt, channel) -> None:
    rt = orchestrator_rt
    policy = rt.settings.saga_policy()
    queue = await channel.declare_queue(PAYMENT_COMMANDS.name, passive=True)
    await queue.purge()
    # other tests of this run publish replies nobody consumes here
    replies = await channel.declare_queue(ORCHESTRATOR_EVENTS.name, passive=True)
    await replies.purge()
    await channel.default_exchange.publish(
        aio_pika.Message(b"{}", delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
        routing_key=PAYMENT_COMMANDS.name,
    )
    saga = await add_saga(rt, utcnow() - timedelta(hours=1))  # long overdue

    assert await fire_due(rt, policy) == 1
    sends, statuses = await payment_sends(rt, saga.id)
    assert sends == 2 and statuses[-1] == "overdue"
    assert (await queue.declare()).message_count == 1, "no copy was published"

    await queue.purge()
    await replies.purge()
    async with rt.uow() as uow:  # due again
        again = await repository.get_for_update(uow.conn, saga.id)
        assert again is not None
        again.steps[Step.PAYMENT].deadline = utcnow() - timedelta(seconds=1)
        repository.save_at_commit(uow, again)
        await uow.commit()
    assert await fire_due(rt, policy) == 1
    sends, statuses = await payment_sends(rt, saga.id)
    assert sends == 3 and statuses[-1] == "resent"
