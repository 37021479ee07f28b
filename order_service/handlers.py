"""Order status events from the saga orchestrator."""

from __future__ import annotations

from collections.abc import Mapping

from order_service import repository
from order_service.services import STATUS_EVENTS, apply_status_event
from order_service.settings import Settings
from shared_domain.contracts import Envelope, MessageType
from shared_domain.db import UnitOfWork
from shared_domain.messaging.consumer import Handler
from shared_domain.runtime import Runtime


async def preload(uow: UnitOfWork, messages: list[tuple[Envelope, object]]) -> None:
    """A batch locks the orders its events move in one statement, in id order."""
    await repository.lock_all(uow, sorted({e.order_id for e, _ in messages}))


def build_handlers(rt: Runtime[Settings]) -> Mapping[MessageType, Handler]:
    async def on_status(envelope: Envelope, _payload: object) -> None:
        await apply_status_event(rt, envelope)

    return dict.fromkeys(STATUS_EVENTS, on_status)
