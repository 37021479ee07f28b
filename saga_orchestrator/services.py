"""Operator actions on sagas. Each runs in one unit of work: load and lock the saga, let
the domain decide, save, emit, and write the audit entry, all committed together."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from uuid import UUID

from saga_orchestrator import metrics, repository
from saga_orchestrator.domain import Outgoing, Saga, SagaConflict
from saga_orchestrator.messages import describe, emit, span_attributes
from saga_orchestrator.settings import Settings
from shared_domain import admin, tracing
from shared_domain.auth import Actor
from shared_domain.choreography import CHOREOGRAPHY
from shared_domain.contracts import utcnow
from shared_domain.runtime import Runtime

log = logging.getLogger(__name__)


class SagaNotFound(Exception):
    pass


OBSERVED_ONLY = (
    "the saga runs by choreography (SAGA_MODE=choreography): the orchestrator only "
    "observes it and sends no command, so it can neither retry nor compensate it; each "
    "service retries its own step, and the order service unwinds a saga that stops"
)


async def _operate(
    rt: Runtime[Settings],
    action: str,
    saga_id: UUID,
    actor: Actor,
    change: Callable[[Saga, datetime], list[Outgoing]],
) -> Saga:
    target = f"saga {saga_id}"
    async with rt.uow() as uow:
        saga = await repository.get_for_update(uow.conn, saga_id)
        if saga is None:
            await admin.record(uow.conn, action, target, actor, "not_found", None)
            await uow.commit()
            raise SagaNotFound(saga_id)
        now = utcnow()
        # in the saga's own trace, linked to the operator's request
        with tracing.continued(f"saga {action}", saga.trace, span_attributes(saga)):
            try:
                if rt.settings.saga_mode == CHOREOGRAPHY:
                    raise SagaConflict(OBSERVED_ONLY)
                outgoing = change(saga, now)
            except SagaConflict as exc:
                await admin.record(uow.conn, action, target, actor, "conflict", str(exc))
                await uow.commit()
                raise
            uow.on_commit(metrics.tally(saga, now))
            emit(uow, saga, outgoing, None)
            repository.save_at_commit(uow, saga)
        await admin.record(uow.conn, action, target, actor, "done", describe(saga, outgoing))
        await uow.commit()
    return saga


async def retry_saga(rt: Runtime[Settings], saga_id: UUID, actor: Actor) -> Saga:
    policy = rt.settings.saga_policy()
    return await _operate(rt, "saga.retry", saga_id, actor, lambda s, now: s.retry(now, policy))


async def compensate_saga(rt: Runtime[Settings], saga_id: UUID, actor: Actor, reason: str) -> Saga:
    policy = rt.settings.saga_policy()
    return await _operate(
        rt,
        "saga.compensate",
        saga_id,
        actor,
        lambda s, now: s.force_compensation(now, policy, reason),
    )
