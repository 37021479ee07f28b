"""What the API shows of sagas and the audit log: queries through the read engine, never
the write side's locks. (The audit log's: shared_domain.admin.)"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from saga_orchestrator.tables import saga_history, sagas


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


async def count_by_status(engine: AsyncEngine, statuses: list[str]) -> dict[str, int]:
    """Sagas in each of `statuses` (an index range per status)."""
    query = (
        select(sagas.c.status, func.count())
        .where(sagas.c.status.in_(statuses))
        .group_by(sagas.c.status)
    )
    async with engine.connect() as conn:
        return {status: count for status, count in (await conn.execute(query)).tuples()}


async def saga_exists(engine: AsyncEngine, saga_id: UUID) -> bool:
    async with engine.connect() as conn:
        found = await conn.execute(select(sagas.c.id).where(sagas.c.id == saga_id))
        return found.first() is not None


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
