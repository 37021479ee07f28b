"""The orchestrator's saga rows against the real PostgreSQL: a batch locks its sagas in
one statement and hands each out once; what a handler saves is what the next reads."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from saga_orchestrator import repository
from saga_orchestrator.domain import Saga
from shared_domain.contracts import utcnow

pytestmark = pytest.mark.integration


async def new_saga(rt) -> Saga:
    saga = Saga(
        id=uuid.uuid4(),
        order_id=uuid.uuid4(),
        order={"customer_id": str(uuid.uuid4()), "items": [], "total_amount": "1.00"},
        correlation_id="t",
    )
    saga.start(utcnow(), rt.settings.saga_policy())
    async with rt.uow() as uow:
        assert await repository.add(uow.conn, saga)
        await uow.commit()
    return saga


async def test_locked_sagas_are_handed_out_once_and_then_read_fresh(orchestrator_rt) -> None:
    rt = orchestrator_rt
    first, second = await new_saga(rt), await new_saga(rt)
    async with rt.uow() as uow:
        await repository.lock_all(uow, sorted([first.id, second.id, uuid.uuid4()]))
        assert set(uow.loaded) == {("saga", first.id), ("saga", second.id)}
        async with rt.pool.acquire() as other:  # the rows are this transaction's
            for saga_id in (first.id, second.id):
                with pytest.raises(asyncpg.LockNotAvailableError):
                    await other.execute(
                        "SELECT 1 FROM sagas WHERE id = $1 FOR UPDATE NOWAIT", saga_id
                    )

        saga = await repository.locked(uow, first.id)
        assert saga is not None and saga.version == 1
        await repository.save(uow.conn, saga)
        again = await repository.locked(uow, first.id)  # not the preloaded one: read now
        assert again is not None and again.version == 2 and again is not saga

        assert await repository.locked(uow, uuid.uuid4()) is None
        await uow.commit()
