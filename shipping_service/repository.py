from __future__ import annotations

from dataclasses import asdict
from typing import Any
from uuid import UUID

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shipping_service.domain import Shipment, ShipmentStatus
from shipping_service.tables import shipments


def _shipment(row: Any) -> Shipment:
    values = dict(row._mapping)
    values["status"] = ShipmentStatus(values["status"])
    return Shipment(**values)


async def get_for_update(conn: AsyncConnection, order_id: UUID) -> Shipment | None:
    row = (
        await conn.execute(
            select(shipments).where(shipments.c.order_id == order_id).with_for_update()
        )
    ).one_or_none()
    return _shipment(row) if row else None


async def add(conn: AsyncConnection, shipment: Shipment) -> None:
    await conn.execute(insert(shipments).values(**asdict(shipment)))


async def save(conn: AsyncConnection, shipment: Shipment) -> None:
    await conn.execute(
        update(shipments)
        .where(shipments.c.id == shipment.id)
        .values(status=shipment.status.value, updated_at=shipment.updated_at)
    )


async def for_order(engine: AsyncEngine, order_id: UUID) -> Shipment | None:
    async with engine.connect() as conn:
        row = (
            await conn.execute(select(shipments).where(shipments.c.order_id == order_id))
        ).one_or_none()
    return _shipment(row) if row else None
