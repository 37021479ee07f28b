"""Notifications on the write side: reads and writes on a writer connection."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from uuid import UUID

from notification_service.domain import Notification, NotificationStatus
from shared_domain.contracts import NotificationKind
from shared_domain.db import Connection

_FIND = "SELECT * FROM notifications WHERE order_id = $1 AND kind = $2"
_ADD = (
    "INSERT INTO notifications (id, order_id, customer_id, kind, channel, subject, status, "
    "attempts, error, created_at, updated_at, saga_id) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) "
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


async def record(conn: Connection, notification: Notification) -> Notification:
    """Insert the notification unless one for its order and kind is recorded already;
    returns the one recorded (a concurrent duplicate's, if it came first)."""
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
        n.saga_id,
    )
    if added:
        return notification
    recorded = await find(conn, n.order_id, n.kind)
    if recorded is None:  # the conflicting row committed, or the insert would have waited
        raise RuntimeError(f"{n.kind} notification for order {n.order_id} vanished")
    return recorded
