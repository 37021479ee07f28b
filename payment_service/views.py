"""What the API shows of payments: queries through the read engine."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from payment_service.tables import payments
from shared_domain.views import fetch_one


async def payment_for_order(engine: AsyncEngine, order_id: UUID) -> dict[str, Any] | None:
    return await fetch_one(engine, select(payments).where(payments.c.order_id == order_id))
