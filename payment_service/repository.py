from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from payment_service.domain import Payment, PaymentStatus
from payment_service.tables import payments
from shared_domain.db import Connection

_ADD = (
    "INSERT INTO payments (id, order_id, customer_id, amount, status, failure_reason, "
    "provider_reference, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
)
_LOCK = "SELECT * FROM payments WHERE order_id = $1 FOR UPDATE"
_SAVE = "UPDATE payments SET status = $2, updated_at = $3, failure_reason = $4 WHERE id = $1"


def _payment(row: Mapping[Any, Any]) -> Payment:
    values = dict(row)
    values["status"] = PaymentStatus(values["status"])
    return Payment(**values)


async def get_for_update(conn: Connection, order_id: UUID) -> Payment | None:
    row = await conn.fetchrow(_LOCK, order_id)
    return _payment(row) if row else None


async def add(conn: Connection, payment: Payment) -> None:
    """A concurrent duplicate hits the unique order_id and is retried as 'already done'."""
    p = payment
    await conn.execute(
        _ADD,
        p.id,
        p.order_id,
        p.customer_id,
        p.amount,
        p.status.value,
        p.failure_reason,
        p.provider_reference,
        p.created_at,
        p.updated_at,
    )


async def save(conn: Connection, payment: Payment) -> None:
    await conn.execute(
        _SAVE, payment.id, payment.status.value, payment.updated_at, payment.failure_reason
    )


async def for_order(engine: AsyncEngine, order_id: UUID) -> Payment | None:
    async with engine.connect() as conn:
        row = (
            await conn.execute(select(payments).where(payments.c.order_id == order_id))
        ).one_or_none()
    return _payment(row._mapping) if row else None
