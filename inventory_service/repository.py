"""Products and reservations on the write side: writes and locking reads on the unit of
work's connection."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

from inventory_service.domain import Product, Reservation, ReservationStatus
from shared_domain.db import Connection

_SAVE_STOCK = "UPDATE products SET stock = $2 WHERE id = $1"
_RESERVATION_LOCK = "SELECT * FROM reservations WHERE order_id = $1 FOR UPDATE"
# Row locks taken in id order, so concurrent reservations never deadlock.
_PRODUCTS_LOCK = "SELECT * FROM products WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE"
# A batch's locks, taken before its first handler, in the order every handler takes its
# own: the reservations it releases (by order id), then all the products its commands
# change (by id). The sort below the product locks reads the whole join first, so the
# reservations are locked before any product.
_BATCH_LOCK = (
    "WITH released AS MATERIALIZED (SELECT items FROM reservations"
    " WHERE order_id = ANY($2::uuid[]) ORDER BY order_id FOR UPDATE),"
    " wanted AS (SELECT unnest($1::uuid[]) AS id"
    " UNION SELECT jsonb_object_keys(items)::uuid FROM released)"
    " SELECT count(*) FROM (SELECT p.id FROM products p JOIN wanted w ON p.id = w.id"
    " ORDER BY p.id FOR UPDATE OF p) AS locked"
)
# A reservation's write takes the stock it changed along in the same statement (one
# round trip); the products are already locked, in id order, by `products_for_update`.
_WITH_STOCK = (
    "WITH stock AS (UPDATE products p SET stock = v.stock, reserved = v.reserved "
    "FROM unnest(${n}::uuid[], ${n1}::integer[], ${n2}::integer[]) AS v(id, stock, reserved) "
    "WHERE p.id = v.id) "
)
_ADD_RESERVATION = _WITH_STOCK.format(n=9, n1=10, n2=11) + (
    "INSERT INTO reservations (id, order_id, status, items, failure_reason, failure_detail, "
    "created_at, updated_at, customer_id, saga_id) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $12, $13)"
)
_SAVE_RESERVATION = _WITH_STOCK.format(n=4, n1=5, n2=6) + (
    "UPDATE reservations SET status = $2, updated_at = $3 WHERE id = $1"
)


def _reservation(row: Mapping[Any, Any]) -> Reservation:
    return Reservation(
        id=row["id"],
        order_id=row["order_id"],
        status=ReservationStatus(row["status"]),
        items={UUID(k): v for k, v in row["items"].items()},
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        failure_reason=row["failure_reason"],
        failure_detail=row["failure_detail"] or {},
        customer_id=row["customer_id"],
        saga_id=row["saga_id"],
    )


def _product(row: Mapping[Any, Any]) -> Product:
    return Product(row["id"], row["name"], row["price"], row["stock"], row["reserved"])


async def reservation_for_update(conn: Connection, order_id: UUID) -> Reservation | None:
    row = await conn.fetchrow(_RESERVATION_LOCK, order_id)
    return _reservation(row) if row else None


async def lock_for_batch(
    conn: Connection, reserved_products: list[UUID], released_orders: list[UUID]
) -> None:
    """Lock, in one statement, the products a batch's reservations take and the
    reservations (and their products) its releases give back."""
    await conn.execute(_BATCH_LOCK, reserved_products, released_orders)


async def products_for_update(conn: Connection, ids: list[UUID]) -> dict[UUID, Product]:
    return {r["id"]: _product(r) for r in await conn.fetch(_PRODUCTS_LOCK, ids)}


async def save_stock(conn: Connection, product: Product) -> None:
    await conn.execute(_SAVE_STOCK, product.id, product.stock)


def _stock(changed: Sequence[Product]) -> tuple[list[UUID], list[int], list[int]]:
    return [p.id for p in changed], [p.stock for p in changed], [p.reserved for p in changed]


async def add_reservation(
    conn: Connection, reservation: Reservation, changed: Sequence[Product] = ()
) -> None:
    """Insert the reservation, and write the stock of the products it `changed`."""
    r = reservation
    await conn.execute(
        _ADD_RESERVATION,
        r.id,
        r.order_id,
        r.status.value,
        {str(k): v for k, v in r.items.items()},
        r.failure_reason,
        r.failure_detail,
        r.created_at,
        r.updated_at,
        *_stock(changed),
        r.customer_id,
        r.saga_id,
    )


async def save_reservation(
    conn: Connection, reservation: Reservation, changed: Sequence[Product]
) -> None:
    """Update the reservation's status, and write the stock of the products it `changed`."""
    await conn.execute(
        _SAVE_RESERVATION,
        reservation.id,
        reservation.status.value,
        reservation.updated_at,
        *_stock(changed),
    )
