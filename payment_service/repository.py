"""Payments on the write side: reads and writes on a writer connection."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from uuid import UUID

from payment_service.domain import Payment, PaymentStatus
from shared_domain.db import Connection

_RECORD = (
    "INSERT INTO payments (id, order_id, customer_id, amount, status, failure_reason, "
    "provider_reference, created_at, updated_at, saga_id) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) "
    "ON CONFLICT (order_id) DO NOTHING RETURNING true"
)
_FIND = "SELECT * FROM payments WHERE order_id = $1"
_LOCK = "SELECT * FROM payments WHERE order_id = $1 FOR UPDATE"
_SAVE = "UPDATE payments SET status = $2, updated_at = $3, failure_reason = $4 WHERE id = $1"


def _payment(row: Mapping[Any, Any]) -> Payment:
    values = dict(row)
    values["status"] = PaymentStatus(values["status"])
    return Payment(**values)


async def find(conn: Connection, order_id: UUID) -> Payment | None:
    """What is recorded for the order, without a lock (before calling out)."""
    row = await conn.fetchrow(_FIND, order_id)
    return _payment(row) if row else None


async def get_for_update(conn: Connection, order_id: UUID) -> Payment | None:
    row = await conn.fetchrow(_LOCK, order_id)
    return _payment(row) if row else None


async def record(conn: Connection, payment: Payment) -> Payment:
    """Insert the payment unless one is recorded for its order already; returns the one
    recorded. Two deliveries racing both call the provider with the same key, and the
    second to record answers with the first's payment."""
    p = payment
    added = await conn.fetchval(
        _RECORD,
        p.id,
        p.order_id,
        p.customer_id,
        p.amount,
        p.status.value,
        p.failure_reason,
        p.provider_reference,
        p.created_at,
        p.updated_at,
        p.saga_id,
    )
    if added:
        return payment
    recorded = await get_for_update(conn, payment.order_id)
    if recorded is None:  # the conflicting row committed, or the insert would have waited
        raise RuntimeError(f"payment for order {payment.order_id} vanished")
    return recorded


async def save(conn: Connection, payment: Payment) -> None:
    await conn.execute(
        _SAVE, payment.id, payment.status.value, payment.updated_at, payment.failure_reason
    )
