from __future__ import annotations

from dataclasses import asdict
from typing import Any
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from notification_service.domain import Notification, NotificationStatus
from notification_service.tables import notifications
from shared_domain.contracts import NotificationKind


def _notification(row: Any) -> Notification:
    values = dict(row._mapping)
    values["status"] = NotificationStatus(values["status"])
    values["kind"] = NotificationKind(values["kind"])
    return Notification(**values)


async def find(
    conn: AsyncConnection, order_id: UUID, kind: NotificationKind
) -> Notification | None:
    row = (
        await conn.execute(
            select(notifications).where(
                notifications.c.order_id == order_id, notifications.c.kind == kind.value
            )
        )
    ).one_or_none()
    return _notification(row) if row else None


async def add(conn: AsyncConnection, notification: Notification) -> bool:
    """False when one for this order and kind was recorded concurrently."""
    result = await conn.execute(
        insert(notifications)
        .values(**asdict(notification))
        .on_conflict_do_nothing(constraint="uq_notifications_order_kind")
    )
    return bool(result.rowcount)


async def for_order(engine: AsyncEngine, order_id: UUID) -> list[Notification]:
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                select(notifications)
                .where(notifications.c.order_id == order_id)
                .order_by(notifications.c.created_at)
            )
        ).all()
    return [_notification(r) for r in rows]
