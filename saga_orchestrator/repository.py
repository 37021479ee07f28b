"""Sagas on the write side. Writers lock the saga row and bump its version, so two
orchestrator replicas can never advance one saga twice."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from saga_orchestrator.domain import Saga, SagaStatus, Step, StepState
from shared_domain.db import Connection, UnitOfWork
from shared_domain.locked_rows import LockedRows


class ConcurrentUpdate(Exception):
    """The saga changed under us; the message is retried against the new state."""


def _state(saga: Saga) -> tuple[Any, ...]:
    """status, current_step, failure_reason, steps, updated_at, deadline_at"""
    current = saga.current_step
    return (
        saga.status.value,
        current.value if current else None,
        saga.failure_reason,
        {k.value: v.to_dict() for k, v in saga.steps.items()},
        saga.updated_at,
        saga.deadline,
    )


# A saga's new transitions are written by the statement that writes the saga (one round
# trip): they arrive as four arrays (step, status, message type, detail) and are unnested.
# Each carries the saga's status as saved, and the statement notifies the live stream's
# listeners (saga_orchestrator.stream); PostgreSQL delivers a NOTIFY only on commit.
_ADD = (
    "WITH saga AS ("
    " INSERT INTO sagas (id, order_id, order_data, correlation_id, version, created_at,"
    " trace_context, status, current_step, failure_reason, steps, updated_at, deadline_at)"
    " VALUES ($1, $2, $3, $4, 1, $5, $6, $7, $8, $9, $10, $11, $12)"
    " ON CONFLICT DO NOTHING RETURNING id"
    "), history AS ("
    " INSERT INTO saga_history (saga_id, step, status, message_type, detail, at, saga_status,"
    " message_id, causation_id)"
    " SELECT saga.id, t.step, t.status, t.message_type, t.detail, $11, $7, t.mid, t.cid"
    " FROM saga, unnest($13::text[], $14::text[], $15::text[], $16::text[], $17::uuid[],"
    " $18::uuid[]) AS t(step, status, message_type, detail, mid, cid)"
    ") SELECT (SELECT count(*) FROM saga), pg_notify('saga_changes', '')"
)
# The sagas a unit of work advanced, written as it commits: one statement for all of a
# batch's (arrays, unnested), the version checked per saga.
_SAVE_ALL = (
    "WITH history AS ("
    " INSERT INTO saga_history (saga_id, step, status, message_type, detail, at,"
    " message_id, causation_id, saga_status)"
    " SELECT * FROM unnest($9::uuid[], $10::text[], $11::text[], $12::text[], $13::text[],"
    " $14::timestamptz[], $15::uuid[], $16::uuid[], $17::text[])"
    "), saved AS ("
    " UPDATE sagas AS s SET version = v.version + 1, status = v.status,"
    " current_step = v.current_step, failure_reason = v.failure_reason, steps = v.steps,"
    " updated_at = v.updated_at, deadline_at = v.deadline_at"
    " FROM unnest($1::uuid[], $2::integer[], $3::text[], $4::text[], $5::text[], $6::jsonb[],"
    " $7::timestamptz[], $8::timestamptz[])"
    " AS v(id, version, status, current_step, failure_reason, steps, updated_at, deadline_at)"
    " WHERE s.id = v.id AND s.version = v.version RETURNING s.id"
    ") SELECT (SELECT count(*) FROM saved), pg_notify('saga_changes', '')"
)
_DUE = (
    "SELECT * FROM sagas WHERE deadline_at <= $1 ORDER BY deadline_at LIMIT $2 "
    "FOR UPDATE SKIP LOCKED"
)


def _take_history(saga: Saga) -> tuple[list[Any], ...]:
    """The transitions not yet written, as columns; cleared from the saga."""
    history, saga.history = saga.history, []
    return (
        [t.step for t in history],
        [t.status for t in history],
        [t.message_type for t in history],
        [t.detail for t in history],
        [t.message_id for t in history],
        [t.causation_id for t in history],
    )


async def add(conn: Connection, saga: Saga) -> bool:
    """Insert a new saga with its first transitions; False when one already exists for
    this order (then nothing is written)."""
    added = await conn.fetchval(
        _ADD,
        saga.id,
        saga.order_id,
        saga.order,
        saga.correlation_id,
        saga.created_at,
        saga.trace or None,
        *_state(saga),
        *_take_history(saga),
    )
    if not added:
        return False
    saga.version = 1
    return True


async def get_for_update(conn: Connection, saga_id: UUID) -> Saga | None:
    return await _SAGAS.lock_one(conn, saga_id)


async def lock_all(uow: UnitOfWork, saga_ids: list[UUID]) -> None:
    """Lock and load several sagas in one statement, in id order, for `locked` to hand
    out."""
    await _SAGAS.lock_all(uow, saga_ids)


async def locked(uow: UnitOfWork, saga_id: UUID) -> Saga | None:
    """The saga, locked, loaded once per unit of work: every message of a batch that
    advances it gets the same object, with what the earlier ones did to it."""
    return await _SAGAS.get(uow, saga_id)


@dataclass
class _Advanced:
    """The sagas a unit of work advanced, and their transitions, until it commits."""

    sagas: dict[UUID, Saga] = field(default_factory=dict)
    history: list[
        tuple[UUID, str, str, str, str | None, datetime | None, UUID | None, UUID | None]
    ] = field(default_factory=list)

    async def write(self, conn: Connection) -> None:
        sagas = list(self.sagas.values())
        states = [_state(s) for s in sagas]
        saved = await conn.fetchval(
            _SAVE_ALL,
            [s.id for s in sagas],
            [s.version for s in sagas],
            *([state[i] for state in states] for i in range(6)),
            *([row[i] for row in self.history] for i in range(8)),
            # the status each saga is saved with, on each of its transitions
            [self.sagas[row[0]].status.value for row in self.history],
        )
        if saved != len(sagas):
            raise ConcurrentUpdate(f"{len(sagas) - saved} saga(s) changed concurrently")
        for saga in sagas:
            saga.version += 1


def save_at_commit(uow: UnitOfWork, saga: Saga) -> None:
    """Write the saga (loaded locked) and its new transitions when the unit of work
    commits, if nobody changed it since it was loaded; the sagas of a whole batch go in
    one statement."""
    advanced: _Advanced | None = uow.loaded.get(_Advanced)
    if advanced is None:
        advanced = uow.loaded[_Advanced] = _Advanced()
        uow.before_commit(_Advanced, advanced.write)
    advanced.sagas[saga.id] = saga
    history, saga.history = saga.history, []
    advanced.history.extend(
        (
            saga.id,
            t.step,
            t.status,
            t.message_type,
            t.detail,
            saga.updated_at,
            t.message_id,
            t.causation_id,
        )
        for t in history
    )


async def due_for_update(conn: Connection, now: datetime, limit: int) -> list[Saga]:
    """Sagas whose command in flight is past its deadline, locked; rows another replica
    holds are skipped, so each one is handled by one replica."""
    return [_saga(row) for row in await conn.fetch(_DUE, now, limit)]


def _saga(row: Mapping[Any, Any]) -> Saga:
    return Saga(
        id=row["id"],
        order_id=row["order_id"],
        order=row["order_data"],
        status=SagaStatus(row["status"]),
        steps={Step(k): StepState.from_dict(v) for k, v in row["steps"].items()},
        failure_reason=row["failure_reason"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        version=row["version"],
        correlation_id=row["correlation_id"],
        trace=row["trace_context"] or {},
    )


_SAGAS = LockedRows("sagas", _saga)
