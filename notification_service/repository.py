from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from notification_service.domain import Notification, NotificationStatus
from notification_service.tables import notifications
from shared_domain.contracts import NotificationKind
from shared_domain.db import Connection

_FIND = "SELECT * FROM notifications WHERE order_id = $1 AND kind = $2"
_ADD = (
    "INSERT INTO notifications (id, order_id, customer_id, kind, channel, subject, status, "
    "attempts, error, created_at, updated_at) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) "
    "ON CONFLICT ON CONSTRAINT uq_notifications_order_kind DO NOTHING RETURNING true"
)


def _notification(row: Mapping[Any, Any]) -> Notification:
    values = dict(row)
    values["status"] = NotificationStatus(values["status"])
    values["kind"] = NotificationKind(values["kind"])
    return Notification(**values)


async def find(conn: Connection, order_id: UUID, kind: NotificationKind) -> Notification | None:
    row = await conn.fetchrow(_FIND, order_id, kind.value)
    return _notification(row) if row else None


async def add(conn: Connection, notification: Notification) -> bool:
    """False when one for this order and kind was recorded concurrently."""
    n = notification
    added = await conn.fetchval(
        _ADD,
        n.id,
        n.order_id,
        n.customer_id,
        n.kind.value,
        n.channel,
        n.subject,
        n.status.value,
        n.attempts,
        n.error,
        n.created_at,
        n.updated_at,
    )
    return bool(added)


async def for_order(engine: AsyncEngine, order_id: UUID) -> list[Notification]:
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                select(notifications)
                .where(notifications.c.order_id == order_id)
                .order_by(notifications.c.created_at)
            )
        ).all()
    return [_notification(r._mapping) for r in rows]
