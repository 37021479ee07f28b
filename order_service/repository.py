from __future__ import annotations

from decimal import Decimal
from typing import Any
from uuid import UUID

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from order_service.domain import Order, OrderLine, OrderStatus
from order_service.tables import order_status_history, orders


def _order(row: Any) -> Order:
    return Order(
        id=row.id,
        customer_id=row.customer_id,
        items=[
            OrderLine(UUID(i["product_id"]), i["quantity"], Decimal(i["price"])) for i in row.items
        ],
        total_amount=row.total_amount,
        status=OrderStatus(row.status),
        shipping_address=row.shipping_address,
        saga_id=row.saga_id,
        failure_reason=row.failure_reason,
        created_at=row.created_at,
        updated_at=row.updated_at,
        idempotency_key=row.idempotency_key,
        request_fingerprint=row.request_fingerprint,
    )


async def add(conn: AsyncConnection, order: Order) -> None:
    await conn.execute(
        insert(orders).values(
            id=order.id,
            customer_id=order.customer_id,
            status=order.status.value,
            total_amount=order.total_amount,
            items=[
                {"product_id": str(i.product_id), "quantity": i.quantity, "price": str(i.price)}
                for i in order.items
            ],
            shipping_address=order.shipping_address,
            saga_id=order.saga_id,
            failure_reason=order.failure_reason,
            idempotency_key=order.idempotency_key,
            request_fingerprint=order.request_fingerprint,
            created_at=order.created_at,
            updated_at=order.updated_at,
        )
    )
    await _write_changes(conn, order)


async def save(conn: AsyncConnection, order: Order) -> None:
    await conn.execute(
        update(orders)
        .where(orders.c.id == order.id)
        .values(
            status=order.status.value,
            failure_reason=order.failure_reason,
            updated_at=order.updated_at,
        )
    )
    await _write_changes(conn, order)


async def _write_changes(conn: AsyncConnection, order: Order) -> None:
    if order.changes:
        await conn.execute(
            insert(order_status_history),
            [
                {"order_id": order.id, "status": c.status.value, "reason": c.reason, "at": c.at}
                for c in order.changes
            ],
        )
        order.changes.clear()


async def get_for_update(conn: AsyncConnection, order_id: UUID) -> Order | None:
    row = (
        await conn.execute(select(orders).where(orders.c.id == order_id).with_for_update())
    ).one_or_none()
    return _order(row) if row else None


async def by_idempotency_key(conn: AsyncConnection, key: str) -> Order | None:
    row = (await conn.execute(select(orders).where(orders.c.idempotency_key == key))).one_or_none()
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
    data = view(_order(row))
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
    return [view(_order(r)) for r in rows], total
