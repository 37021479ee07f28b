"""What the API shows of orders: queries through the read engine, never the write
side's locks."""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from uuid import UUID

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from order_service.domain import Order, OrderLine
from order_service.tables import order_status_history, orders


def order_view(order: Order) -> dict[str, Any]:
    """An order as the API shows it (also the answer to placing one)."""
    return _view(order, order.items)


def _row_view(row: Any) -> dict[str, Any]:
    lines = [
        OrderLine(UUID(i["product_id"]), i["quantity"], Decimal(i["price"])) for i in row.items
    ]
    return _view(row, lines)


def _view(order: Any, lines: list[OrderLine]) -> dict[str, Any]:
    """`order` is an Order or a row of `orders`: both have these attributes; only their
    items differ (lines, or the stored JSON)."""
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
            for i in lines
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
    data = _row_view(row)
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
    return [_row_view(r) for r in rows], total
