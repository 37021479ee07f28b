"""Rows a unit of work locks and loads once.

A batch of messages locks every row its handlers will change in one statement, in id
order, before the first handler runs: two replicas whose batches share rows then wait
for each other instead of deadlocking (each handler taking its own lock, one after
another, would lock them in the batch's order). The handlers then find their row in
the unit of work's identity map, so two messages of one batch for the same row work on
the same object, each seeing what the one before did to it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar
from uuid import UUID

from shared_domain.db import Connection, UnitOfWork

T = TypeVar("T")


class LockedRows(Generic[T]):
    def __init__(self, table: str, load: Callable[[Mapping[str, Any]], T]) -> None:
        self._table = table
        self._load = load
        self._lock_one = f"SELECT * FROM {table} WHERE id = $1 FOR UPDATE"
        self._lock_all = f"SELECT * FROM {table} WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE"

    async def lock_all(self, uow: UnitOfWork, ids: list[UUID]) -> None:
        """Lock and load the rows in one statement, for `get` to hand out."""
        for row in await uow.conn.fetch(self._lock_all, ids):
            uow.loaded.setdefault((self._table, row["id"]), self._load(row))

    async def get(self, uow: UnitOfWork, row_id: UUID) -> T | None:
        """The row, locked, loaded once per unit of work."""
        key = (self._table, row_id)
        found: T | None = uow.loaded.get(key)
        if found is None:
            found = await self.lock_one(uow.conn, row_id)
            if found is not None:
                uow.loaded[key] = found
        return found

    async def lock_one(self, conn: Connection, row_id: UUID) -> T | None:
        """The row, locked and read afresh (not kept in the identity map)."""
        row = await conn.fetchrow(self._lock_one, row_id)
        return None if row is None else self._load(row)
