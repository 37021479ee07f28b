"""payment.process and payment.refund. Idempotent by order: a repeated command re-emits
the recorded outcome, so a retrying orchestrator always gets its answer."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from decimal import Decimal

from payment_service import repository
from payment_service.domain import NOT_CHARGED, Payment, PaymentStatus
from payment_service.provider import PaymentProvider, ProviderUnavailable, RefundRejected
from payment_service.settings import Settings
from shared_domain.contracts import (
    Envelope,
    MessageType,
    PaymentFailed,
    PaymentProcessed,
    PaymentRefunded,
    PaymentRefundFailed,
    ProcessPayment,
    RefundPayment,
    utcnow,
)
from shared_domain.messaging.consumer import Handler
from shared_domain.runtime import Runtime

log = logging.getLogger(__name__)
SOURCE = "payment_service"


def charge_reply(cause: Envelope, payment: Payment) -> Envelope:
    if payment.status is PaymentStatus.FAILED:
        return cause.follow(
            MessageType.PAYMENT_FAILED,
            PaymentFailed(payment_id=payment.id, reason=payment.failure_reason or "declined"),
            SOURCE,
        )
    return cause.follow(
        MessageType.PAYMENT_PROCESSED,
        PaymentProcessed(
            payment_id=payment.id,
            amount=payment.amount,
            provider_reference=payment.provider_reference or "",
        ),
        SOURCE,
    )


def build_handlers(
    rt: Runtime[Settings], provider: PaymentProvider
) -> Mapping[MessageType, Handler]:
    async def process(envelope: Envelope, command: ProcessPayment) -> None:
        async with rt.uow(envelope) as uow:
            payment = await repository.get_for_update(uow.conn, envelope.order_id)
            if payment is not None:
                log.info(
                    "payment.process for order %s already handled (%s); re-sending outcome",
                    envelope.order_id,
                    payment.status,
                )
            else:
                now = utcnow()
                try:
                    result = await provider.charge(
                        idempotency_key=str(envelope.order_id),
                        amount=command.amount,
                        customer_id=command.customer_id,
                    )
                except ProviderUnavailable as exc:
                    payment = Payment.declined(
                        envelope.order_id,
                        command.customer_id,
                        command.amount,
                        f"provider_unavailable: {exc}",
                        now,
                    )
                else:
                    if result.approved:
                        payment = Payment.charged(
                            envelope.order_id,
                            command.customer_id,
                            command.amount,
                            result.reference or "",
                            now,
                        )
                    else:
                        payment = Payment.declined(
                            envelope.order_id,
                            command.customer_id,
                            command.amount,
                            result.decline_reason or "declined",
                            now,
                        )
                await repository.add(uow.conn, payment)
                log.info(
                    "order %s: payment %s %s (%s)",
                    envelope.order_id,
                    payment.id,
                    payment.status,
                    payment.failure_reason or payment.provider_reference,
                )
            uow.emit(charge_reply(envelope, payment))
            await uow.commit()

    async def refund(envelope: Envelope, command: RefundPayment) -> None:
        async with rt.uow(envelope) as uow:
            payment = await repository.get_for_update(uow.conn, envelope.order_id)
            if payment is None:
                # Refund before any charge: leave a tombstone so a late charge is refused.
                payment = Payment.declined(
                    envelope.order_id, None, Decimal("0.00"), NOT_CHARGED, utcnow()
                )
                await repository.add(uow.conn, payment)
                log.info(
                    "order %s: refund before any charge, recorded as not charged", envelope.order_id
                )
            elif payment.needs_refund:
                try:
                    await provider.refund(
                        idempotency_key=f"refund-{payment.order_id}",
                        reference=payment.provider_reference or "",
                        amount=payment.amount,
                    )
                except (ProviderUnavailable, RefundRejected) as exc:
                    log.warning(
                        "order %s: refund of %s failed: %s", envelope.order_id, payment.amount, exc
                    )
                    uow.emit(
                        envelope.follow(
                            MessageType.PAYMENT_REFUND_FAILED,
                            PaymentRefundFailed(reason=str(exc)),
                            SOURCE,
                        )
                    )
                    await uow.commit()
                    return
                payment.mark_refunded(utcnow())
                await repository.save(uow.conn, payment)
                log.info(
                    "order %s: payment %s refunded %s (%s)",
                    envelope.order_id,
                    payment.id,
                    payment.amount,
                    command.reason,
                )
            uow.emit(
                envelope.follow(
                    MessageType.PAYMENT_REFUNDED,
                    PaymentRefunded(payment_id=payment.id, amount=payment.refunded_amount),
                    SOURCE,
                )
            )
            await uow.commit()

    return {MessageType.PAYMENT_PROCESS: process, MessageType.PAYMENT_REFUND: refund}
