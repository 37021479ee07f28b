"""Shipments on the write side: reads and writes on a writer connection."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from uuid import UUID

from shared_domain.db import Connection
from shipping_service.domain import Shipment, ShipmentStatus

_RECORD = (
    "INSERT INTO shipments (id, order_id, status, carrier, tracking_number, shipping_address, "
    "failure_reason, created_at, updated_at, customer_id, saga_id) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) "
    "ON CONFLICT (order_id) DO NOTHING RETURNING true"
)
_FIND = "SELECT * FROM shipments WHERE order_id = $1"
_LOCK = "SELECT * FROM shipments WHERE order_id = $1 FOR UPDATE"
_SAVE = "UPDATE shipments SET status = $2, updated_at = $3 WHERE id = $1"


def _shipment(row: Mapping[Any, Any]) -> Shipment:
    values = dict(row)
    values["status"] = ShipmentStatus(values["status"])
    return Shipment(**values)


async def find(conn: Connection, order_id: UUID) -> Shipment | None:
    """What is recorded for the order, without a lock (before calling out)."""
    row = await conn.fetchrow(_FIND, order_id)
    return _shipment(row) if row else None


async def get_for_update(conn: Connection, order_id: UUID) -> Shipment | None:
    row = await conn.fetchrow(_LOCK, order_id)
    return _shipment(row) if row else None


async def record(conn: Connection, shipment: Shipment) -> Shipment:
    """Insert the shipment unless one is recorded for its order already; returns the one
    recorded (a cancellation that came first, or a concurrent duplicate's booking)."""
    s = shipment
    added = await conn.fetchval(
        _RECORD,
        s.id,
        s.order_id,
        s.status.value,
        s.carrier,
        s.tracking_number,
        s.shipping_address,
        s.failure_reason,
        s.created_at,
        s.updated_at,
        s.customer_id,
        s.saga_id,
    )
    if added:
        return shipment
    recorded = await get_for_update(conn, shipment.order_id)
    if recorded is None:  # the conflicting row committed, or the insert would have waited
        raise RuntimeError(f"shipment for order {shipment.order_id} vanished")
    return recorded


async def save(conn: Connection, shipment: Shipment) -> None:
    await conn.execute(_SAVE, shipment.id, shipment.status.value, shipment.updated_at)
