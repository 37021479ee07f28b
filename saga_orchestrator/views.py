"""What the API shows of sagas and the audit log: queries through the read engine, never
the write side's locks. (The audit log's: shared_domain.admin.)"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from sqlalchemy import ColumnElement, String, func, literal_column, or_, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from saga_orchestrator.tables import saga_history, sagas
from saga_orchestrator.timeline import timeline
from shared_domain.contracts import COMMAND_PAYLOADS


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


# Written out, not bound: the index is on this very expression, and a key sent as a
# parameter would not match it.
CUSTOMER: ColumnElement[str] = literal_column("sagas.order_data ->> 'customer_id'", String)
# What the orchestrator sends: the commands, and the order's events but the first.
_SENT = frozenset(str(t) for t in COMMAND_PAYLOADS) | {
    "order.processing",
    "order.completed",
    "order.cancelled",
    "order.failed",
}


async def list_sagas(
    engine: AsyncEngine,
    status: str | None,
    limit: int,
    offset: int,
    *,
    step: str | None = None,
    search: UUID | None = None,
) -> tuple[list[dict[str, Any]], int]:
    """Newest first. Each filter has an index: by status, by the step a saga is at, and
    a searched id is a saga's, an order's or a customer's."""
    conditions = []
    if status:
        conditions.append(sagas.c.status == status)
    if step:
        conditions.append(sagas.c.current_step == step)
    if search is not None:
        conditions.append(
            or_(sagas.c.id == search, sagas.c.order_id == search, CUSTOMER.in_([str(search)]))
        )
    query = select(sagas, CUSTOMER.label("customer_id")).where(*conditions)
    count = select(func.count()).select_from(sagas).where(*conditions)
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                query.order_by(sagas.c.created_at.desc()).limit(limit).offset(offset)
            )
        ).all()
        total = (await conn.execute(count)).scalar_one()
    return [_view(r) | {"customer_id": r.customer_id} for r in rows], total


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
    view["customer_id"] = row.order_data.get("customer_id")
    view["order"] = row.order_data
    view["history"] = [
        {
            "step": h.step,
            "status": h.status,
            "message_type": h.message_type,
            "detail": h.detail,
            "at": h.at,
            "message_id": h.message_id,
            "causation_id": h.causation_id,
        }
        for h in history
    ]
    view["messages"] = _messages(history)
    view["timeline"] = timeline(view["history"])
    return view


def _messages(history: Sequence[Any]) -> list[dict[str, Any]]:
    """The messages the saga exchanged, once each, in the order it met them: the replies
    it received and the commands it sent (a re-sent command is the same message)."""
    seen: dict[UUID, dict[str, Any]] = {}
    for h in history:
        if h.message_id is None or h.message_id in seen:
            continue
        seen[h.message_id] = {
            "type": h.message_type,
            "message_id": h.message_id,
            "causation_id": h.causation_id,
            "direction": "sent" if h.message_type in _SENT else "received",
            "at": h.at,
        }
    return list(seen.values())


# ---------------------------------------------------------------- the console's overview

WINDOW = 300  # seconds of throughput the overview shows
BUCKET = 10  # seconds a bar
LATENCY_SAMPLE = 200  # completed sagas the step latencies are taken from

_STARTED = text(
    "SELECT floor(extract(epoch FROM now() - created_at) / :bucket)::int AS ago, count(*) AS n"
    " FROM sagas WHERE status = ANY(:statuses)"
    " AND created_at > now() - make_interval(secs => :window) GROUP BY 1"
)
# Sagas that undid a step, by when they last changed; found among those created a little
# before the window (a saga lasts seconds), through the status index.
_COMPENSATED = text(
    "SELECT floor(extract(epoch FROM now() - updated_at) / :bucket)::int AS ago, count(*) AS n"
    " FROM sagas WHERE status = ANY(:undoing)"
    " AND created_at > now() - make_interval(secs => :window + 60)"
    " AND updated_at > now() - make_interval(secs => :window)"
    " AND EXISTS (SELECT 1 FROM jsonb_each(steps) e"
    " WHERE e.value ->> 'status' = ANY(:undone)) GROUP BY 1"
)
_LATENCY = text(
    "WITH recent AS (SELECT steps FROM sagas WHERE status = 'completed'"
    " ORDER BY created_at DESC LIMIT :sample),"
    " durations AS (SELECT e.key AS step, extract(epoch FROM"
    " (e.value ->> 'finished_at')::timestamptz - (e.value ->> 'started_at')::timestamptz)"
    " * 1000 AS ms FROM recent, jsonb_each(recent.steps) e"
    " WHERE e.value ->> 'finished_at' IS NOT NULL AND e.value ->> 'started_at' IS NOT NULL)"
    " SELECT step, percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS p50,"
    " percentile_cont(0.95) WITHIN GROUP (ORDER BY ms) AS p95, count(*) AS n"
    " FROM durations GROUP BY step"
)


async def overview(engine: AsyncEngine, statuses: list[str], steps: list[str]) -> dict[str, Any]:
    """Sagas by status, started and compensated per second over the last `WINDOW`
    seconds, and each step's latency over the last `LATENCY_SAMPLE` completed sagas."""
    undoing = ["compensating", "cancelled", "failed"]
    undone = ["compensating", "compensated", "compensation_failed"]
    async with engine.connect() as conn:
        started = (
            await conn.execute(_STARTED, {"bucket": BUCKET, "statuses": statuses, "window": WINDOW})
        ).all()
        compensated = (
            await conn.execute(
                _COMPENSATED,
                {"bucket": BUCKET, "undoing": undoing, "undone": undone, "window": WINDOW},
            )
        ).all()
        latency = {
            r.step: r for r in (await conn.execute(_LATENCY, {"sample": LATENCY_SAMPLE})).all()
        }
    by_status = await count_by_status(engine, statuses)
    bars = WINDOW // BUCKET
    starts = {r.ago: r.n for r in started}
    undos = {r.ago: r.n for r in compensated}
    return {
        "sagas_by_status": {s: by_status.get(s, 0) for s in statuses},
        "window_seconds": WINDOW,
        "bucket_seconds": BUCKET,
        # oldest first; the last bar is the one still filling
        "buckets": [
            {
                "seconds_ago": ago * BUCKET,
                "started_per_second": starts.get(ago, 0) / BUCKET,
                "compensated_per_second": undos.get(ago, 0) / BUCKET,
            }
            for ago in range(bars - 1, -1, -1)
        ],
        "latency_sample": LATENCY_SAMPLE,
        "step_latency": [
            {
                "step": step,
                "p50_ms": round(latency[step].p50, 1) if step in latency else None,
                "p95_ms": round(latency[step].p95, 1) if step in latency else None,
                "samples": latency[step].n if step in latency else 0,
            }
            for step in steps
        ],
    }
