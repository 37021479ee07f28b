"""The envelopes the orchestrator sends: the saga's outgoing messages staged in the
outbox, and the one-line account of them its logs and audit entries give."""

from __future__ import annotations

from dataclasses import replace
from uuid import uuid4

from saga_orchestrator.domain import Outgoing, Saga
from shared_domain import tracing
from shared_domain.contracts import ORCHESTRATOR, Envelope, OrderCreated
from shared_domain.db import UnitOfWork

SOURCE = ORCHESTRATOR


def saga_started_by(envelope: Envelope, order: OrderCreated) -> Saga:
    """The saga an `order.created` starts, its trace continuing the message's."""
    return Saga(
        id=envelope.saga_id,
        order_id=envelope.order_id,
        order=order.model_dump(mode="json"),
        correlation_id=envelope.correlation_id,
        trace=tracing.carrier_of_current(),
    )


def identify(saga: Saga, outgoing: list[Outgoing], cause: Envelope | None) -> list[Outgoing]:
    """Give every outgoing message its id, and the saga's new history lines the message
    each is about: the command sent (caused by `cause`) or `cause` itself."""
    sent = [out if out.message_id else replace(out, message_id=uuid4()) for out in outgoing]
    by_type = {out.type.value: out for out in sent}
    for i, line in enumerate(saga.history):
        if line.message_id is not None:
            continue
        out = by_type.get(line.message_type)
        if out is not None:
            causation = cause.message_id if cause else None
            saga.history[i] = replace(line, message_id=out.message_id, causation_id=causation)
        elif cause is not None and line.message_type == cause.type:
            saga.history[i] = replace(
                line, message_id=cause.message_id, causation_id=cause.causation_id
            )
    return sent


def emit(uow: UnitOfWork, saga: Saga, outgoing: list[Outgoing], cause: Envelope | None) -> None:
    """Stage the saga's messages. A command keeps the id the saga gave it, so a re-send
    is the same message to the service's inbox. Called before the saga is saved: its
    new history lines learn the ids of the messages they are about."""
    for out in identify(saga, outgoing, cause):
        uow.emit(
            Envelope(
                message_id=out.message_id or uuid4(),
                type=out.type.value,
                saga_id=saga.id,
                order_id=saga.order_id,
                correlation_id=saga.correlation_id or (cause.correlation_id if cause else ""),
                causation_id=cause.message_id if cause else None,
                source=SOURCE,
                attempt=out.attempt,
                payload=out.payload,
            ),
            delay=out.delay,
        )


def span_attributes(saga: Saga) -> dict[str, str]:
    """What a span about the saga as a whole carries (see shared_domain.tracing)."""
    step = saga.current_step
    return {
        "saga.id": str(saga.id),
        "order.id": str(saga.order_id),
        "saga.step": step.value if step else "",
    }


def describe(saga: Saga, outgoing: list[Outgoing]) -> str:
    reason = f" ({saga.failure_reason})" if saga.is_terminal and saga.failure_reason else ""
    sent = ", ".join(f"{o.type}" + (f" #{o.attempt}" if o.attempt > 1 else "") for o in outgoing)
    return f"saga {saga.status}{reason}, next: {sent or 'nothing'}"
