"""Inbox of processed message ids. Claiming a message id inserts it in the handler's own
transaction: if the state change commits, so does the claim, and a unique-key conflict
means "already done"."""

from __future__ import annotations

from typing import TYPE_CHECKING
from uuid import UUID

from sqlalchemy import Column, DateTime, MetaData, String, Table, func
from sqlalchemy.dialects.postgresql import UUID as PgUUID

if TYPE_CHECKING:
    from shared_domain.db import Connection


def define_inbox_table(metadata: MetaData) -> Table:
    return Table(
        "inbox",
        metadata,
        Column("message_id", PgUUID(as_uuid=True), primary_key=True),
        Column("message_type", String(100), nullable=False),
        Column("processed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    )


_CLAIM = (
    "INSERT INTO inbox (message_id, message_type) VALUES ($1, $2) "
    "ON CONFLICT (message_id) DO NOTHING RETURNING true"
)


async def claim(conn: Connection, message_id: UUID, message_type: str) -> bool:
    """True the first time a message id is seen (within this transaction's view)."""
    return bool(await conn.fetchval(_CLAIM, message_id, message_type))
