from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from shared_domain.db import Connection
from shipping_service.domain import Shipment, ShipmentStatus
from shipping_service.tables import shipments

_ADD = (
    "INSERT INTO shipments (id, order_id, status, carrier, tracking_number, shipping_address, "
    "failure_reason, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
)
_LOCK = "SELECT * FROM shipments WHERE order_id = $1 FOR UPDATE"
_SAVE = "UPDATE shipments SET status = $2, updated_at = $3 WHERE id = $1"


def _shipment(row: Mapping[Any, Any]) -> Shipment:
    values = dict(row)
    values["status"] = ShipmentStatus(values["status"])
    return Shipment(**values)


async def get_for_update(conn: Connection, order_id: UUID) -> Shipment | None:
    row = await conn.fetchrow(_LOCK, order_id)
    return _shipment(row) if row else None


async def add(conn: Connection, shipment: Shipment) -> None:
    s = shipment
    await conn.execute(
        _ADD,
        s.id,
        s.order_id,
        s.status.value,
        s.carrier,
        s.tracking_number,
        s.shipping_address,
        s.failure_reason,
        s.created_at,
        s.updated_at,
    )


async def save(conn: Connection, shipment: Shipment) -> None:
    await conn.execute(_SAVE, shipment.id, shipment.status.value, shipment.updated_at)


async def for_order(engine: AsyncEngine, order_id: UUID) -> Shipment | None:
    async with engine.connect() as conn:
        row = (
            await conn.execute(select(shipments).where(shipments.c.order_id == order_id))
        ).one_or_none()
    return _shipment(row._mapping) if row else None
