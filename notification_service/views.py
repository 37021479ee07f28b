"""What the API shows of notifications: queries through the read engine."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from notification_service.tables import notifications
from shared_domain.views import fetch_all


async def notifications_for_order(engine: AsyncEngine, order_id: UUID) -> list[dict[str, Any]]:
    return await fetch_all(
        engine,
        select(notifications)
        .where(notifications.c.order_id == order_id)
        .order_by(notifications.c.created_at),
    )
