"""Message handlers for payment.process and payment.refund. Idempotent by order: a
repeated command re-emits the recorded outcome, so a retrying orchestrator always gets
its answer. The provider is called outside any transaction (see the worker rhythm in
docs/architecture.md)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from decimal import Decimal

from payment_service import repository
from payment_service.domain import NOT_CHARGED, Payment
from payment_service.messages import command_reply, compensation_failed, compensation_reply
from payment_service.provider import PaymentProvider, ProviderUnavailable, RefundRejected
from payment_service.settings import Settings
from shared_domain.choreography import CHOREOGRAPHY
from shared_domain.contracts import Envelope, MessageType, ProcessPayment, RefundPayment, utcnow
from shared_domain.messaging.consumer import Handler, final_try
from shared_domain.pg import connection
from shared_domain.runtime import Runtime
from shared_domain.worker import handle_command, refuse_other_saga

log = logging.getLogger(__name__)


class RefundNotDoneYet(Exception):
    """A refund failed (choreography, tries left): its message is retried with backoff."""


class RecordedConcurrently(Exception):
    """A charge was recorded while a refund was deciding there was none; the message is
    retried and then finds the charge to refund."""


def build_handlers(
    rt: Runtime[Settings], provider: PaymentProvider
) -> Mapping[MessageType, Handler]:
    async def find(envelope: Envelope) -> Payment | None:
        async with connection(rt.pool) as conn:
            return await repository.find(conn, envelope.order_id)

    async def charge(envelope: Envelope, command: ProcessPayment) -> Payment:
        now = utcnow()
        try:
            result = await provider.charge(
                idempotency_key=str(envelope.order_id),
                amount=command.amount,
                customer_id=command.customer_id,
            )
        except ProviderUnavailable as exc:
            reason = f"provider_unavailable: {exc}"
            return Payment.declined(
                envelope.order_id, command.customer_id, command.amount, reason, now
            )
        if result.approved:
            return Payment.charged(
                envelope.order_id, command.customer_id, command.amount, result.reference or "", now
            )
        reason = result.decline_reason or "declined"
        return Payment.declined(envelope.order_id, command.customer_id, command.amount, reason, now)

    async def process(envelope: Envelope, command: ProcessPayment) -> None:
        await handle_command(
            rt,
            envelope,
            log,
            find=lambda conn: repository.find(conn, envelope.order_id),
            work=lambda: charge(envelope, command),
            record=repository.record,
            reply=command_reply,
            done=lambda p: (
                f"payment {p.id} {p.status} ({p.failure_reason or p.provider_reference})"
            ),
        )

    async def refund(envelope: Envelope, command: RefundPayment) -> None:
        recorded = await find(envelope)
        refuse_other_saga(envelope, recorded, "payment")
        if recorded is not None and recorded.needs_refund:
            try:
                await provider.refund(
                    idempotency_key=f"refund-{recorded.order_id}",
                    reference=recorded.provider_reference or "",
                    amount=recorded.amount,
                )
            except (ProviderUnavailable, RefundRejected) as exc:
                if rt.settings.saga_mode == CHOREOGRAPHY and not final_try():
                    # No conductor retries the undo: the message is retried with backoff,
                    # and only its last try answers that the refund could not be done.
                    raise RefundNotDoneYet(f"order {envelope.order_id}: {exc}") from exc
                async with rt.uow(envelope) as uow:
                    uow.log_on_commit(
                        log,
                        "order %s: refund of %s failed: %s",
                        envelope.order_id,
                        recorded.amount,
                        exc,
                        level=logging.WARNING,
                    )
                    uow.emit(compensation_failed(envelope, str(exc)))
                    await uow.commit()
                return
        async with rt.uow(envelope) as uow:
            if recorded is None:
                # Refund before any charge: a tombstone, so that a late charge is refused.
                tombstone = Payment.declined(
                    envelope.order_id, None, Decimal("0.00"), NOT_CHARGED, utcnow()
                )
                tombstone.saga_id = envelope.saga_id
                payment = await repository.record(uow.conn, tombstone)
                if payment.needs_refund:  # a charge was recorded since we looked
                    raise RecordedConcurrently(f"payment for order {envelope.order_id}")
                if payment is tombstone:
                    uow.log_on_commit(
                        log,
                        "order %s: refund before any charge, recorded as not charged",
                        payment.order_id,
                    )
            else:
                payment = await repository.get_for_update(uow.conn, envelope.order_id) or recorded
                if payment.needs_refund:  # refunded at the provider above
                    payment.mark_refunded(utcnow())
                    await repository.save(uow.conn, payment)
                    uow.log_on_commit(
                        log,
                        "order %s: payment %s refunded %s (%s)",
                        envelope.order_id,
                        payment.id,
                        payment.amount,
                        command.reason,
                    )
            uow.emit(compensation_reply(envelope, payment))
            await uow.commit()

    return {MessageType.PAYMENT_PROCESS: process, MessageType.PAYMENT_REFUND: refund}
