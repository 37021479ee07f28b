from __future__ import annotations

from typing import Any
from uuid import UUID

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from inventory_service.domain import Product, Reservation, ReservationStatus
from inventory_service.tables import products, reservations


def _reservation(row: Any) -> Reservation:
    return Reservation(
        id=row.id,
        order_id=row.order_id,
        status=ReservationStatus(row.status),
        items={UUID(k): v for k, v in row.items.items()},
        created_at=row.created_at,
        updated_at=row.updated_at,
        failure_reason=row.failure_reason,
        failure_detail=row.failure_detail or {},
    )


def _product(row: Any) -> Product:
    return Product(row.id, row.name, row.price, row.stock, row.reserved)


async def reservation_for_update(conn: AsyncConnection, order_id: UUID) -> Reservation | None:
    row = (
        await conn.execute(
            select(reservations).where(reservations.c.order_id == order_id).with_for_update()
        )
    ).one_or_none()
    return _reservation(row) if row else None


async def products_for_update(conn: AsyncConnection, ids: list[UUID]) -> dict[UUID, Product]:
    """Row locks taken in id order, so concurrent reservations never deadlock."""
    rows = (
        await conn.execute(
            select(products).where(products.c.id.in_(ids)).order_by(products.c.id).with_for_update()
        )
    ).all()
    return {r.id: _product(r) for r in rows}


async def save_stock(conn: AsyncConnection, changed: list[Product]) -> None:
    for product in changed:
        await conn.execute(
            update(products)
            .where(products.c.id == product.id)
            .values(stock=product.stock, reserved=product.reserved)
        )


def _reservation_row(r: Reservation) -> dict[str, Any]:
    return {
        "id": r.id,
        "order_id": r.order_id,
        "status": r.status.value,
        "items": {str(k): v for k, v in r.items.items()},
        "failure_reason": r.failure_reason,
        "failure_detail": r.failure_detail,
        "created_at": r.created_at,
        "updated_at": r.updated_at,
    }


async def add_reservation(conn: AsyncConnection, reservation: Reservation) -> None:
    await conn.execute(insert(reservations).values(**_reservation_row(reservation)))


async def save_reservation(conn: AsyncConnection, reservation: Reservation) -> None:
    await conn.execute(
        update(reservations)
        .where(reservations.c.id == reservation.id)
        .values(status=reservation.status.value, updated_at=reservation.updated_at)
    )


# ---------------------------------------------------------------- read side


async def list_products(engine: AsyncEngine) -> list[Product]:
    async with engine.connect() as conn:
        rows = (await conn.execute(select(products).order_by(products.c.id))).all()
    return [_product(r) for r in rows]


async def get_product(engine: AsyncEngine, product_id: UUID) -> Product | None:
    async with engine.connect() as conn:
        row = (
            await conn.execute(select(products).where(products.c.id == product_id))
        ).one_or_none()
    return _product(row) if row else None


async def reservation_for_order(engine: AsyncEngine, order_id: UUID) -> Reservation | None:
    async with engine.connect() as conn:
        row = (
            await conn.execute(select(reservations).where(reservations.c.order_id == order_id))
        ).one_or_none()
    return _reservation(row) if row else None
