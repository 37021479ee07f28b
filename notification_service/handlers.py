"""Message handler for notification.send: delivery is retried with backoff, outside any
transaction (see the worker rhythm in docs/architecture.md); the outcome, sent or
failed, is recorded once per order and kind and re-sent on a duplicate command."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from notification_service import repository
from notification_service.domain import Notification
from notification_service.messages import command_reply
from notification_service.sender import DeliveryFailed, SimulatedSender
from notification_service.settings import Settings
from shared_domain.contracts import Envelope, MessageType, SendNotification, utcnow
from shared_domain.messaging.consumer import Handler
from shared_domain.retry import call_retrying
from shared_domain.runtime import Runtime
from shared_domain.worker import handle_command

log = logging.getLogger(__name__)


def build_handlers(rt: Runtime[Settings]) -> Mapping[MessageType, Handler]:
    s = rt.settings
    rates = rt.failure_rates
    sender = SimulatedSender(
        rates["notification"] if rates is not None else s.notification_failure_rate
    )

    async def deliver(envelope: Envelope, command: SendNotification) -> Notification:
        draft = Notification.record(
            envelope.order_id, command.customer_id, command.kind, 0, None, utcnow()
        )
        attempts, error = 0, None
        try:
            async for attempt in call_retrying(
                s.notification_max_attempts, s.notification_retry_delay, DeliveryFailed
            ):
                with attempt:
                    attempts += 1
                    await sender.send(draft)
        except DeliveryFailed as exc:
            error = str(exc)
        return Notification.record(
            envelope.order_id, command.customer_id, command.kind, attempts, error, utcnow()
        )

    def done(n: Notification) -> str:
        failed = f": {n.error}" if n.error else ""
        return f"{n.kind} notification {n.status} after {n.attempts} attempt(s){failed}"

    async def send(envelope: Envelope, command: SendNotification) -> None:
        await handle_command(
            rt,
            envelope,
            log,
            find=lambda conn: repository.find(conn, envelope.order_id, command.kind),
            work=lambda: deliver(envelope, command),
            record=repository.record,
            reply=command_reply,
            done=done,
        )

    return {MessageType.NOTIFICATION_SEND: send}
