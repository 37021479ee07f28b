"""What the API shows of products and reservations: queries through the read engine."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from inventory_service.tables import products, reservations
from shared_domain.views import fetch_all, fetch_one


async def list_products(engine: AsyncEngine) -> list[dict[str, Any]]:
    return await fetch_all(engine, select(products).order_by(products.c.id))


async def product(engine: AsyncEngine, product_id: UUID) -> dict[str, Any] | None:
    return await fetch_one(engine, select(products).where(products.c.id == product_id))


async def reservation_for_order(engine: AsyncEngine, order_id: UUID) -> dict[str, Any] | None:
    row = await fetch_one(engine, select(reservations).where(reservations.c.order_id == order_id))
    if row is None:
        return None
    # items are stored as {product_id: quantity}; the API lists them as lines
    row["items"] = [{"product_id": k, "quantity": v} for k, v in row["items"].items()]
    row["failure_detail"] = row["failure_detail"] or {}
    return row
