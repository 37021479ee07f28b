"""Inbox of processed message ids. Claiming a message id inserts it in the handler's own
transaction: if the state change commits, so does the claim, and a unique-key conflict
means "already done".

A handler's transaction starts with its claim, so the two go to PostgreSQL together:
`BEGIN` and the insert as one simple query, one round trip instead of two. A simple
query carries no parameters; its two values are a UUID and a message type name, both
checked here, and written in as literals."""

from __future__ import annotations

import re
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


_TYPE_NAME = re.compile(r"[a-z_]+(\.[a-z_]+)*")


async def claim(conn: Connection, message_id: UUID, message_type: str) -> bool:
    """True the first time a message id is seen (within this transaction's view)."""
    return bool(await conn.fetchval(_CLAIM, message_id, message_type))


async def begin_and_claim(conn: Connection, messages: list[tuple[UUID, str]]) -> bool:
    """Open a transaction on `conn` and claim the messages (id, type) in it: True if
    every one of them is new (as `claim`)."""
    values = []
    for message_id, message_type in messages:
        if not isinstance(message_id, UUID) or not _TYPE_NAME.fullmatch(message_type):
            raise ValueError(f"not a message id and type: {message_id!r}, {message_type!r}")
        values.append(f"('{message_id}', '{message_type}')")
    status = await conn.execute(
        f"BEGIN; INSERT INTO inbox (message_id, message_type) "
        f"VALUES {', '.join(values)} ON CONFLICT (message_id) DO NOTHING"
    )
    return bool(status == f"INSERT 0 {len(messages)}")
