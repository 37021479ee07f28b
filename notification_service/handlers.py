"""notification.send: delivery is retried with backoff; the outcome, sent or failed,
is recorded once per order and kind and re-sent on a duplicate command."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from notification_service import repository
from notification_service.domain import Notification, NotificationStatus
from notification_service.sender import DeliveryFailed, SimulatedSender
from notification_service.settings import Settings
from shared_domain.contracts import (
    Envelope,
    MessageType,
    NotificationFailed,
    NotificationSent,
    SendNotification,
    utcnow,
)
from shared_domain.messaging.consumer import Handler
from shared_domain.pg import connection
from shared_domain.retry import call_retrying
from shared_domain.runtime import Runtime

log = logging.getLogger(__name__)
SOURCE = "notification_service"


def outcome(cause: Envelope, n: Notification) -> Envelope:
    if n.status is NotificationStatus.FAILED:
        return cause.follow(
            MessageType.NOTIFICATION_FAILED,
            NotificationFailed(kind=n.kind, reason=n.error or "failed", attempts=n.attempts),
            SOURCE,
        )
    return cause.follow(
        MessageType.NOTIFICATION_SENT,
        NotificationSent(notification_id=n.id, kind=n.kind, attempts=n.attempts),
        SOURCE,
    )


def build_handlers(rt: Runtime[Settings]) -> Mapping[MessageType, Handler]:
    s = rt.settings
    sender = SimulatedSender(s.notification_failure_rate)

    async def deliver(notification: Notification) -> tuple[int, str | None]:
        attempts = 0
        try:
            async for attempt in call_retrying(
                s.notification_max_attempts, s.notification_retry_delay, DeliveryFailed
            ):
                with attempt:
                    attempts += 1
                    await sender.send(notification)
        except DeliveryFailed as exc:
            return attempts, str(exc)
        return attempts, None

    async def send(envelope: Envelope, command: SendNotification) -> None:
        async with connection(rt.pool) as conn:
            existing = await repository.find(conn, envelope.order_id, command.kind)
        if existing is None:
            draft = Notification.record(
                envelope.order_id, command.customer_id, command.kind, 0, None, utcnow()
            )
            attempts, error = await deliver(draft)
            notification = Notification.record(
                envelope.order_id, command.customer_id, command.kind, attempts, error, utcnow()
            )
            log.info(
                "order %s: %s notification %s after %d attempt(s)%s",
                envelope.order_id,
                command.kind,
                notification.status,
                attempts,
                f": {error}" if error else "",
            )
        async with rt.uow(envelope) as uow:
            if existing is None and not await repository.add(uow.conn, notification):
                existing = await repository.find(uow.conn, envelope.order_id, command.kind)
            uow.emit(outcome(envelope, existing or notification))
            await uow.commit()

    return {MessageType.NOTIFICATION_SEND: send}
