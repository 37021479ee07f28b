"""Persistence of sagas. Writers lock the saga row and bump its version, so two
orchestrator replicas can never advance one saga twice."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from saga_orchestrator.domain import Saga, SagaStatus, Step, StepState
from saga_orchestrator.tables import admin_audit, saga_history, sagas


class ConcurrentUpdate(Exception):
    """The saga changed under us; the message is retried against the new state."""


_ROW_COLUMNS = (
    "status",
    "current_step",
    "failure_reason",
    "steps",
    "updated_at",
    "deadline_at",
)


def _row(saga: Saga) -> dict[str, Any]:
    current = saga.current_step
    return {
        "status": saga.status.value,
        "current_step": current.value if current else None,
        "failure_reason": saga.failure_reason,
        "steps": {k.value: v.to_dict() for k, v in saga.steps.items()},
        "updated_at": saga.updated_at,
        "deadline_at": saga.deadline,
    }


async def add(conn: AsyncConnection, saga: Saga) -> bool:
    """Insert a new saga; False when one already exists for this order."""
    result = await conn.execute(
        pg_insert(sagas)
        .values(
            id=saga.id,
            order_id=saga.order_id,
            order_data=saga.order,
            correlation_id=saga.correlation_id,
            version=1,
            created_at=saga.created_at,
            **_row(saga),
        )
        .on_conflict_do_nothing()
    )
    if not result.rowcount:
        return False
    saga.version = 1
    await _write_history(conn, saga)
    return True


# The hot path's statements are built once: constructing them per message cost more CPU
# than PostgreSQL spent running them.
_LOCK = select(sagas).where(sagas.c.id == bindparam("saga_id")).with_for_update()
_SAVE = (
    update(sagas)
    .where(sagas.c.id == bindparam("b_id"), sagas.c.version == bindparam("b_version"))
    .values(
        version=bindparam("b_new_version"),
        **{name: bindparam(f"b_{name}") for name in _ROW_COLUMNS},
    )
)
_HISTORY = insert(saga_history)


async def get_for_update(conn: AsyncConnection, saga_id: UUID) -> Saga | None:
    row = (await conn.execute(_LOCK, {"saga_id": saga_id})).one_or_none()
    return None if row is None else _saga(row)


async def due_for_update(conn: AsyncConnection, now: datetime, limit: int) -> list[Saga]:
    """Sagas whose command in flight is past its deadline, locked; rows another replica
    holds are skipped, so each one is handled by one replica."""
    rows = (
        await conn.execute(
            select(sagas)
            .where(sagas.c.deadline_at <= now)
            .order_by(sagas.c.deadline_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    ).all()
    return [_saga(row) for row in rows]


def _saga(row: Any) -> Saga:
    return Saga(
        id=row.id,
        order_id=row.order_id,
        order=row.order_data,
        status=SagaStatus(row.status),
        steps={Step(k): StepState.from_dict(v) for k, v in row.steps.items()},
        failure_reason=row.failure_reason,
        created_at=row.created_at,
        updated_at=row.updated_at,
        version=row.version,
        correlation_id=row.correlation_id,
    )


async def save(conn: AsyncConnection, saga: Saga) -> None:
    params = {f"b_{k}": v for k, v in _row(saga).items()}
    params.update(b_id=saga.id, b_version=saga.version, b_new_version=saga.version + 1)
    result = await conn.execute(_SAVE, params)
    if result.rowcount != 1:
        raise ConcurrentUpdate(f"saga {saga.id} changed concurrently (version {saga.version})")
    saga.version += 1
    await _write_history(conn, saga)


async def _write_history(conn: AsyncConnection, saga: Saga) -> None:
    if saga.history:
        at = saga.updated_at
        await conn.execute(
            _HISTORY,
            [
                {
                    "saga_id": saga.id,
                    "step": t.step,
                    "status": t.status,
                    "message_type": t.message_type,
                    "detail": t.detail,
                    "at": at,
                }
                for t in saga.history
            ],
        )
        saga.history.clear()


# ---------------------------------------------------------------- read side


def _view(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "order_id": row.order_id,
        "status": row.status,
        "current_step": row.current_step,
        "failure_reason": row.failure_reason,
        "steps": row.steps,
        "version": row.version,
        "deadline_at": row.deadline_at,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }


async def list_sagas(
    engine: AsyncEngine, status: str | None, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    query = select(sagas)
    count = select(func.count()).select_from(sagas)
    if status:
        query = query.where(sagas.c.status == status)
        count = count.where(sagas.c.status == status)
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                query.order_by(sagas.c.created_at.desc()).limit(limit).offset(offset)
            )
        ).all()
        total = (await conn.execute(count)).scalar_one()
    return [_view(r) for r in rows], total


async def get_saga(engine: AsyncEngine, saga_id: UUID) -> dict[str, Any] | None:
    async with engine.connect() as conn:
        row = (await conn.execute(select(sagas).where(sagas.c.id == saga_id))).one_or_none()
        if row is None:
            return None
        history = (
            await conn.execute(
                select(saga_history)
                .where(saga_history.c.saga_id == saga_id)
                .order_by(saga_history.c.id)
            )
        ).all()
    view = _view(row)
    view["order"] = row.order_data
    view["history"] = [
        {
            "step": h.step,
            "status": h.status,
            "message_type": h.message_type,
            "detail": h.detail,
            "at": h.at,
        }
        for h in history
    ]
    return view


# ---------------------------------------------------------------- admin audit log


async def record_audit(conn: AsyncConnection, **entry: Any) -> None:
    await conn.execute(insert(admin_audit).values(**entry))


async def list_audit(engine: AsyncEngine, limit: int) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = (
            await conn.execute(select(admin_audit).order_by(admin_audit.c.id.desc()).limit(limit))
        ).all()
    # str(): column names are a str subclass, which orjson refuses as keys
    return [{str(k): v for k, v in row._asdict().items()} for row in rows]
