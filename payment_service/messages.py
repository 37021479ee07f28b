"""The replies the payment service sends, built from what it recorded: a repeated
command gets the same answer as the first."""

from __future__ import annotations

from payment_service.domain import Payment, PaymentStatus
from shared_domain.contracts import (
    Envelope,
    MessageType,
    PaymentFailed,
    PaymentProcessed,
    PaymentRefunded,
    PaymentRefundFailed,
)

SOURCE = "payment_service"


def command_reply(cause: Envelope, payment: Payment) -> Envelope:
    """The outcome of `payment.process`."""
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


def compensation_reply(cause: Envelope, payment: Payment) -> Envelope:
    """The outcome of `payment.refund`: what was given back (nothing if nothing was taken)."""
    return cause.follow(
        MessageType.PAYMENT_REFUNDED,
        PaymentRefunded(payment_id=payment.id, amount=payment.refunded_amount),
        SOURCE,
    )


def compensation_failed(cause: Envelope, reason: str) -> Envelope:
    return cause.follow(
        MessageType.PAYMENT_REFUND_FAILED, PaymentRefundFailed(reason=reason), SOURCE
    )
