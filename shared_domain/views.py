"""The read side every package shares: queries run on the SQLAlchemy read engine, apart
from the writers' pool, and their rows go out as plain dicts."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Executable
from sqlalchemy.ext.asyncio import AsyncEngine


def as_dict(row: Any) -> dict[str, Any]:
    # str(): column names are a str subclass, which orjson refuses as keys
    return {str(k): v for k, v in row._mapping.items()}


async def fetch_one(engine: AsyncEngine, query: Executable) -> dict[str, Any] | None:
    async with engine.connect() as conn:
        row = (await conn.execute(query)).one_or_none()
    return as_dict(row) if row is not None else None


async def fetch_all(engine: AsyncEngine, query: Executable) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [as_dict(r) for r in rows]
