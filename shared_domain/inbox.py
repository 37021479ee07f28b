"""Inbox of processed message ids. Claiming a message id inserts it in the handler's own
transaction: if the state change commits, so does the claim, and a unique-key conflict
means "already done"."""

from __future__ import annotations

import functools
from uuid import UUID

from sqlalchemy import Column, DateTime, MetaData, String, Table, bindparam, func
from sqlalchemy.dialects.postgresql import UUID as PgUUID
from sqlalchemy.dialects.postgresql import Insert, insert
from sqlalchemy.ext.asyncio import AsyncConnection


def define_inbox_table(metadata: MetaData) -> Table:
    return Table(
        "inbox",
        metadata,
        Column("message_id", PgUUID(as_uuid=True), primary_key=True),
        Column("message_type", String(100), nullable=False),
        Column("processed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    )


@functools.cache
def _claim_statement(table: Table) -> Insert:
    # Built once per table: constructing the statement costs more than running it.
    return (
        insert(table)
        .values(message_id=bindparam("message_id"), message_type=bindparam("message_type"))
        .on_conflict_do_nothing(index_elements=["message_id"])
    )


async def claim(conn: AsyncConnection, table: Table, message_id: UUID, message_type: str) -> bool:
    """True the first time a message id is seen (within this transaction's view)."""
    result = await conn.execute(
        _claim_statement(table), {"message_id": message_id, "message_type": message_type}
    )
    return bool(result.rowcount)
