from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any
from uuid import UUID

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from order_service.domain import Order, OrderLine, OrderStatus
from order_service.tables import order_status_history, orders
from shared_domain.db import Connection


def _order(row: Mapping[Any, Any]) -> Order:
    return Order(
        id=row["id"],
        customer_id=row["customer_id"],
        items=[
            OrderLine(UUID(i["product_id"]), i["quantity"], Decimal(i["price"]))
            for i in row["items"]
        ],
        total_amount=row["total_amount"],
        status=OrderStatus(row["status"]),
        shipping_address=row["shipping_address"],
        saga_id=row["saga_id"],
        failure_reason=row["failure_reason"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        idempotency_key=row["idempotency_key"],
        request_fingerprint=row["request_fingerprint"],
    )


_ADD = (
    "INSERT INTO orders (id, customer_id, status, total_amount, items, shipping_address, "
    "saga_id, failure_reason, idempotency_key, request_fingerprint, created_at, updated_at) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
)
_SAVE = "UPDATE orders SET status = $2, failure_reason = $3, updated_at = $4 WHERE id = $1"
_CHANGE = "INSERT INTO order_status_history (order_id, status, reason, at) VALUES ($1, $2, $3, $4)"
_LOCK = "SELECT * FROM orders WHERE id = $1 FOR UPDATE"
_BY_KEY = "SELECT * FROM orders WHERE idempotency_key = $1"


async def add(conn: Connection, order: Order) -> None:
    """A second order with the same Idempotency-Key raises asyncpg.UniqueViolationError."""
    await conn.execute(
        _ADD,
        order.id,
        order.customer_id,
        order.status.value,
        order.total_amount,
        [
            {"product_id": str(i.product_id), "quantity": i.quantity, "price": str(i.price)}
            for i in order.items
        ],
        order.shipping_address,
        order.saga_id,
        order.failure_reason,
        order.idempotency_key,
        order.request_fingerprint,
        order.created_at,
        order.updated_at,
    )
    await _write_changes(conn, order)


async def save(conn: Connection, order: Order) -> None:
    await conn.execute(_SAVE, order.id, order.status.value, order.failure_reason, order.updated_at)
    await _write_changes(conn, order)


async def _write_changes(conn: Connection, order: Order) -> None:
    rows = [(order.id, c.status.value, c.reason, c.at) for c in order.changes]
    if len(rows) == 1:
        await conn.execute(_CHANGE, *rows[0])
    elif rows:
        await conn.executemany(_CHANGE, rows)
    order.changes.clear()


async def get_for_update(conn: Connection, order_id: UUID) -> Order | None:
    row = await conn.fetchrow(_LOCK, order_id)
    return _order(row) if row else None


async def by_idempotency_key(conn: Connection, key: str) -> Order | None:
    row = await conn.fetchrow(_BY_KEY, key)
    return _order(row) if row else None


# ---------------------------------------------------------------- read side


def view(order: Order) -> dict[str, Any]:
    return {
        "id": order.id,
        "customer_id": order.customer_id,
        "items": [
            {
                "product_id": i.product_id,
                "quantity": i.quantity,
                "price": i.price,
                "subtotal": i.subtotal,
            }
            for i in order.items
        ],
        "total_amount": order.total_amount,
        "status": order.status,
        "shipping_address": order.shipping_address,
        "saga_id": order.saga_id,
        "failure_reason": order.failure_reason,
        "created_at": order.created_at,
        "updated_at": order.updated_at,
    }


async def order_with_history(engine: AsyncEngine, order_id: UUID) -> dict[str, Any] | None:
    async with engine.connect() as conn:
        row = (await conn.execute(select(orders).where(orders.c.id == order_id))).one_or_none()
        if row is None:
            return None
        history = (
            await conn.execute(
                select(order_status_history)
                .where(order_status_history.c.order_id == order_id)
                .order_by(order_status_history.c.id)
            )
        ).all()
    data = view(_order(row._mapping))
    data["status_history"] = [{"status": h.status, "reason": h.reason, "at": h.at} for h in history]
    return data


async def customer_orders(
    engine: AsyncEngine, customer_id: UUID, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                select(orders)
                .where(orders.c.customer_id == customer_id)
                .order_by(orders.c.created_at.desc(), orders.c.id)
                .limit(limit)
                .offset(offset)
            )
        ).all()
        total = (
            await conn.execute(
                select(func.count()).select_from(orders).where(orders.c.customer_id == customer_id)
            )
        ).scalar_one()
    return [view(_order(r._mapping)) for r in rows], total
