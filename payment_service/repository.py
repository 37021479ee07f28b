from __future__ import annotations

from dataclasses import asdict
from typing import Any
from uuid import UUID

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from payment_service.domain import Payment, PaymentStatus
from payment_service.tables import payments


def _payment(row: Any) -> Payment:
    values = dict(row._mapping)
    values["status"] = PaymentStatus(values["status"])
    return Payment(**values)


async def get_for_update(conn: AsyncConnection, order_id: UUID) -> Payment | None:
    row = (
        await conn.execute(
            select(payments).where(payments.c.order_id == order_id).with_for_update()
        )
    ).one_or_none()
    return _payment(row) if row else None


async def add(conn: AsyncConnection, payment: Payment) -> None:
    """A concurrent duplicate hits the unique order_id and is retried as 'already done'."""
    await conn.execute(insert(payments).values(**asdict(payment)))


async def save(conn: AsyncConnection, payment: Payment) -> None:
    await conn.execute(
        update(payments)
        .where(payments.c.id == payment.id)
        .values(
            status=payment.status.value,
            updated_at=payment.updated_at,
            failure_reason=payment.failure_reason,
        )
    )


async def for_order(engine: AsyncEngine, order_id: UUID) -> Payment | None:
    async with engine.connect() as conn:
        row = (
            await conn.execute(select(payments).where(payments.c.order_id == order_id))
        ).one_or_none()
    return _payment(row) if row else None
