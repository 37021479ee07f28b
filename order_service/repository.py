"""Orders on the write side: writes and locking reads on the unit of work's connection."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from order_service.domain import Order, OrderLine, OrderStatus
from shared_domain.db import Connection, UnitOfWork
from shared_domain.locked_rows import LockedRows


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
        unwound_at=row["unwound_at"],
    )


# Each write takes the order's status changes along in the same statement (one round
# trip): the history rows come from arrays, unnested.
_CHANGES = (
    "INSERT INTO order_status_history (order_id, status, reason, at) "
    "SELECT {order_id}, c.status, c.reason, c.at "
    "FROM {source}unnest($2::text[], $3::text[], $4::timestamptz[]) AS c(status, reason, at)"
)
_ADD = (
    "WITH added AS (INSERT INTO orders (id, customer_id, status, total_amount, items, "
    "shipping_address, saga_id, failure_reason, idempotency_key, request_fingerprint, "
    "created_at, updated_at) VALUES ($1, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) "
    "ON CONFLICT (customer_id, idempotency_key) DO NOTHING RETURNING id), "
    "changes AS (" + _CHANGES.format(order_id="added.id", source="added, ") + ") "
    "SELECT count(*) FROM added"
)
_SAVE = (
    "WITH saved AS (UPDATE orders SET status = $5, failure_reason = $6, updated_at = $7, "
    "unwound_at = $8 WHERE id = $1) " + _CHANGES.format(order_id="$1::uuid", source="")
)
_BY_KEY = "SELECT * FROM orders WHERE customer_id = $1 AND idempotency_key = $2"
# A key is kept for IDEMPOTENCY_KEY_RETENTION; then it is let go, in batches.
_FORGET_KEYS = (
    "UPDATE orders SET idempotency_key = NULL, request_fingerprint = NULL WHERE id IN ("
    "SELECT id FROM orders WHERE idempotency_key IS NOT NULL AND created_at < $1 "
    "LIMIT $2 FOR UPDATE SKIP LOCKED)"
)


def _changes(order: Order) -> tuple[list[str], list[str | None], list[datetime]]:
    changes, order.changes = order.changes, []
    return (
        [c.status.value for c in changes],
        [c.reason for c in changes],
        [c.at for c in changes],
    )


async def add(conn: Connection, order: Order) -> bool:
    """Insert the order; False (nothing written) if its Idempotency-Key is taken: a
    concurrent holder of the key is waited for, so the caller can read that order."""
    added = await conn.fetchval(
        _ADD,
        order.id,
        *_changes(order),
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
    return bool(added)


async def save(conn: Connection, order: Order) -> None:
    await conn.execute(
        _SAVE,
        order.id,
        *_changes(order),
        order.status.value,
        order.failure_reason,
        order.updated_at,
        order.unwound_at,
    )


# Choreography's deadlines: open orders placed, or unwound, before $1; locked, so that
# replicas of the watcher share them out.
_OVERDUE = (
    "SELECT * FROM orders WHERE status IN ('pending', 'processing') AND "
    "((unwound_at IS NULL AND created_at < $1) OR unwound_at < $1) "
    "ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED"
)


async def overdue(conn: Connection, before: datetime, limit: int) -> list[Order]:
    return [_order(r) for r in await conn.fetch(_OVERDUE, before, limit)]


_ORDERS = LockedRows("orders", _order)


async def lock_all(uow: UnitOfWork, order_ids: list[UUID]) -> None:
    """Lock and load several orders in one statement, in id order, for `locked`."""
    await _ORDERS.lock_all(uow, order_ids)


async def locked(uow: UnitOfWork, order_id: UUID) -> Order | None:
    """The order, locked, loaded once per unit of work."""
    return await _ORDERS.get(uow, order_id)


async def by_idempotency_key(conn: Connection, customer_id: UUID, key: str) -> Order | None:
    row = await conn.fetchrow(_BY_KEY, customer_id, key)
    return _order(row) if row else None


async def forget_keys(conn: Connection, placed_before: datetime, limit: int) -> int:
    """Let go of the Idempotency-Keys of orders placed before `placed_before`, at most
    `limit` of them; returns how many."""
    status = await conn.execute(_FORGET_KEYS, placed_before, limit)
    return int(status.split()[-1])
