"""Inbox of processed message ids. Claiming a message id inserts it in the handler's own
transaction: if the state change commits, so does the claim, and a unique-key conflict
means "already done"."""

from __future__ import annotations

from uuid import UUID

from sqlalchemy import Column, DateTime, MetaData, String, Table, func
from sqlalchemy.dialects.postgresql import UUID as PgUUID
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection


def define_inbox_table(metadata: MetaData) -> Table:
    return Table(
        "inbox",
        metadata,
        Column("message_id", PgUUID(as_uuid=True), primary_key=True),
        Column("message_type", String(100), nullable=False),
        Column("processed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    )


async def claim(conn: AsyncConnection, table: Table, message_id: UUID, message_type: str) -> bool:
    """True the first time a message id is seen (within this transaction's view)."""
    result = await conn.execute(
        insert(table)
        .values(message_id=message_id, message_type=message_type)
        .on_conflict_do_nothing(index_elements=["message_id"])
    )
    return bool(result.rowcount)
