"""What the API shows of shipments: queries through the read engine."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from shared_domain.views import fetch_one
from shipping_service.tables import shipments


async def shipment_for_order(engine: AsyncEngine, order_id: UUID) -> dict[str, Any] | None:
    return await fetch_one(engine, select(shipments).where(shipments.c.order_id == order_id))
