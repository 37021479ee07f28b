"""The orchestrator's saga rows against the real PostgreSQL: a batch locks its sagas in
one statement, each is loaded once per unit of work, and what the handlers did to them
is written as the unit of work commits, checked against the version it was loaded at."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from saga_orchestrator import repository
from saga_orchestrator.app import SERVICE as ORCHESTRATOR
from saga_orchestrator.domain import SagaStatus
from saga_orchestrator.settings import Settings as OrchestratorSettings
from shared_domain.contracts import MessageType, utcnow
from shared_domain.runtime import Runtime
from tests.integration.conftest import add_saga, open_runtime

pytestmark = pytest.mark.integration


async def stored(rt, saga_id: uuid.UUID) -> tuple[int, str, int]:
    async with rt.uow() as uow:
        row = await uow.conn.fetchrow("SELECT version, status FROM sagas WHERE id = $1", saga_id)
        history = await uow.conn.fetchval(
            "SELECT count(*) FROM saga_history WHERE saga_id = $1", saga_id
        )
    return row["version"], row["status"], history


async def test_a_batch_locks_its_sagas_and_each_is_loaded_once(orchestrator_rt) -> None:
    rt = orchestrator_rt
    first, second = await add_saga(rt), await add_saga(rt)
    async with rt.uow() as uow:
        await repository.lock_all(uow, sorted([first.id, second.id, uuid.uuid4()]))
        async with rt.pool.acquire() as other:  # the rows are this transaction's
            for saga_id in (first.id, second.id):
                with pytest.raises(asyncpg.LockNotAvailableError):
                    await other.execute(
                        "SELECT 1 FROM sagas WHERE id = $1 FOR UPDATE NOWAIT", saga_id
                    )
        saga = await repository.locked(uow, first.id)
        assert saga is not None and saga.version == 1
        assert await repository.locked(uow, first.id) is saga
        assert await repository.locked(uow, uuid.uuid4()) is None


async def test_advanced_sagas_are_written_as_the_unit_of_work_commits(orchestrator_rt) -> None:
    rt = orchestrator_rt
    policy = rt.settings.saga_policy()
    first, second = await add_saga(rt), await add_saga(rt)
    before = [await stored(rt, s.id) for s in (first, second)]
    advanced = []
    async with rt.uow() as uow:
        for saga_id in (first.id, second.id):
            saga = await repository.locked(uow, saga_id)
            assert saga is not None
            advanced.append(saga)
            assert saga.handle(
                MessageType.PAYMENT_FAILED, {"reason": "card_declined"}, utcnow(), policy
            )
            repository.save_at_commit(uow, saga)
        # a second message for the first saga, in the same unit of work, sees the first's
        again = await repository.locked(uow, first.id)
        assert again is not None and again.status is SagaStatus.CANCELLED
        assert await stored(rt, first.id) == before[0], "nothing is written before the commit"
        await uow.commit()
    for saga, (version, _, history) in zip(advanced, before, strict=True):
        assert saga.version == version + 1
        new_version, status, new_history = await stored(rt, saga.id)
        assert (new_version, status) == (version + 1, SagaStatus.CANCELLED.value)
        assert new_history > history


async def test_a_saga_changed_since_it_was_loaded_fails_the_commit_and_keeps_nothing(
    orchestrator_rt,
) -> None:
    rt = orchestrator_rt
    saga = await add_saga(rt)
    async with rt.uow() as uow:
        stale = await repository.get_for_update(uow.conn, saga.id)
        await uow.commit()
    async with rt.uow() as uow:  # someone else advances it first
        current = await repository.get_for_update(uow.conn, saga.id)
        assert current is not None
        repository.save_at_commit(uow, current)
        await uow.commit()
    before = await stored(rt, saga.id)
    assert stale is not None
    stale.handle(
        MessageType.PAYMENT_FAILED, {"reason": "card_declined"}, utcnow(), rt.settings.saga_policy()
    )
    with pytest.raises(repository.ConcurrentUpdate):
        async with rt.uow() as uow:
            repository.save_at_commit(uow, stale)
            await uow.commit()
    assert await stored(rt, saga.id) == before


_GROW = (
    "INSERT INTO sagas (id, order_id, order_data, correlation_id, version, created_at, status,"
    " steps, updated_at, deadline_at)"
    " SELECT gen_random_uuid(), gen_random_uuid(), '{}', 't', 1, now(), 'running', '{}', now(),"
    " now() + interval '1 hour' FROM generate_series(1, $1)"
)
_SCANS = "SELECT seq_scan, idx_scan FROM pg_stat_xact_user_tables WHERE relname = 'sagas'"


@pytest.fixture
async def short_lived_statements(vhost: str, db_prefix: str) -> AsyncIterator[Runtime[Any]]:
    rt = await open_runtime(
        ORCHESTRATOR, OrchestratorSettings, vhost, db_prefix, DB_STATEMENT_LIFETIME=0.5
    )
    yield rt
    await rt.stop()


async def test_the_hot_statements_read_sagas_by_index_however_small_the_table_was(
    short_lived_statements,
) -> None:
    """A statement prepared while the table was small must not keep reading all of it
    once it has grown. A plan cached for a table without statistics (no autovacuum to
    gather them, or not yet) is a sequential scan; kept, every batch would read every
    saga ever stored. The statements are prepared again after DB_STATEMENT_LIFETIME."""
    rt = short_lived_statements
    saga = await add_saga(rt)
    for _ in range(8):  # past the executions after which a prepared plan may be cached
        async with rt.uow() as uow:
            await repository.lock_all(uow, [saga.id, uuid.uuid4()])
            loaded = await repository.locked(uow, saga.id)
            assert loaded is not None
            repository.save_at_commit(uow, loaded)
            await repository.due_for_update(uow.conn, utcnow(), 10)
            await uow.commit()
    async with rt.uow() as uow:
        await uow.conn.execute(_GROW, 20_000)
        await uow.commit()
    await asyncio.sleep(rt.settings.db_statement_lifetime * 2)
    async with rt.pool.acquire() as conn:  # counted from zero: what is pending goes out
        await conn.execute("SELECT pg_stat_force_next_flush()")

    scans: list[tuple[int, int]] = []

    async def count_scans(conn) -> None:
        row = await conn.fetchrow(_SCANS)
        scans.append((row["seq_scan"], row["idx_scan"]))

    async with rt.uow() as uow:  # the same, single pooled connection: its cached plans
        await repository.lock_all(uow, [saga.id, uuid.uuid4()])
        loaded = await repository.locked(uow, saga.id)
        assert loaded is not None
        repository.save_at_commit(uow, loaded)
        assert await repository.due_for_update(uow.conn, utcnow(), 10) == []
        uow.before_commit("count scans", count_scans)  # after the saga's write
        await uow.commit()
    assert rt.pool.get_size() == 1
    ((seq_scans, index_scans),) = scans
    assert seq_scans == 0, f"{seq_scans} sequential scan(s) of sagas"
    assert index_scans >= 3
