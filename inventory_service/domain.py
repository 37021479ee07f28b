"""Stock and reservations. Pure logic, no I/O.

`stock` is what is available; `reserved` is what reservations hold. A reservation takes
every line of an order or nothing, and stock never goes negative.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from uuid import UUID, uuid4


class ReservationStatus(StrEnum):
    RESERVED = "reserved"
    RELEASED = "released"
    FAILED = "failed"
    CANCELLED = "cancelled"  # released before it was ever reserved


INSUFFICIENT_STOCK = "insufficient_stock"
UNKNOWN_PRODUCT = "unknown_product"
ORDER_CANCELLED = "order_cancelled"


@dataclass
class Product:
    id: UUID
    name: str
    price: Decimal
    stock: int
    reserved: int


@dataclass
class Reservation:
    id: UUID
    order_id: UUID
    status: ReservationStatus
    items: dict[UUID, int]
    created_at: datetime
    updated_at: datetime
    failure_reason: str | None = None
    failure_detail: dict[str, object] = field(default_factory=dict)
    customer_id: UUID | None = None  # whose it is (None: a tombstone, or an older command)
    saga_id: UUID | None = None  # the saga whose command made it


MAX_STOCK = 1_000_000_000  # per product; far inside the column's integer range


class StockConflict(Exception):
    """A stock change the product's state does not allow."""


def add_stock(product: Product, quantity: int) -> None:
    """Add `quantity` to what is available (negative: take it away). What reservations
    hold is never touched, and stock never goes below zero."""
    new = product.stock + quantity
    if new < 0:
        raise StockConflict(
            f"product {product.id} has {product.stock} available, cannot remove {-quantity}"
        )
    if new > MAX_STOCK:
        raise StockConflict(f"product {product.id} would hold {new}, more than {MAX_STOCK}")
    product.stock = new


def wanted_quantities(lines: list[tuple[UUID, int]]) -> dict[UUID, int]:
    """Quantities per product, duplicates summed, in a stable (lock) order."""
    totals: dict[UUID, int] = defaultdict(int)
    for product_id, quantity in lines:
        totals[product_id] += quantity
    return dict(sorted(totals.items(), key=lambda kv: str(kv[0])))


def reserve(
    order_id: UUID, wanted: dict[UUID, int], products: dict[UUID, Product], now: datetime
) -> Reservation:
    """Take the stock for every line, or none of it. Mutates `products` only on success."""
    for product_id, quantity in wanted.items():
        product = products.get(product_id)
        if product is None:
            return Reservation(
                uuid4(),
                order_id,
                ReservationStatus.FAILED,
                wanted,
                now,
                now,
                UNKNOWN_PRODUCT,
                {"product_id": str(product_id)},
            )
        if product.stock < quantity:
            return Reservation(
                uuid4(),
                order_id,
                ReservationStatus.FAILED,
                wanted,
                now,
                now,
                INSUFFICIENT_STOCK,
                {"product_id": str(product_id), "requested": quantity, "available": product.stock},
            )
    for product_id, quantity in wanted.items():
        products[product_id].stock -= quantity
        products[product_id].reserved += quantity
    return Reservation(uuid4(), order_id, ReservationStatus.RESERVED, wanted, now, now)


def release(reservation: Reservation, products: dict[UUID, Product], now: datetime) -> None:
    if reservation.status is not ReservationStatus.RESERVED:
        raise ValueError(f"cannot release a {reservation.status} reservation")
    for product_id, quantity in reservation.items.items():
        product = products[product_id]
        product.stock += quantity
        product.reserved -= quantity
    reservation.status = ReservationStatus.RELEASED
    reservation.updated_at = now


def cancelled_before_reserve(order_id: UUID, now: datetime) -> Reservation:
    """A release that arrived first leaves this tombstone so a late reserve is refused."""
    return Reservation(
        uuid4(), order_id, ReservationStatus.CANCELLED, {}, now, now, ORDER_CANCELLED
    )
