"""Payments: one per order. A charge either completes or fails; a completed payment can
be refunded once. Pure logic, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from uuid import UUID, uuid4


class PaymentStatus(StrEnum):
    COMPLETED = "completed"
    FAILED = "failed"
    REFUNDED = "refunded"


NOT_CHARGED = "cancelled before any charge"


@dataclass
class Payment:
    id: UUID
    order_id: UUID
    customer_id: UUID | None
    amount: Decimal
    status: PaymentStatus
    failure_reason: str | None
    provider_reference: str | None
    created_at: datetime
    updated_at: datetime
    saga_id: UUID | None = None  # the saga whose command made it

    @classmethod
    def charged(
        cls, order_id: UUID, customer_id: UUID, amount: Decimal, reference: str, now: datetime
    ) -> Payment:
        return cls(
            uuid4(),
            order_id,
            customer_id,
            amount,
            PaymentStatus.COMPLETED,
            None,
            reference,
            now,
            now,
        )

    @classmethod
    def declined(
        cls, order_id: UUID, customer_id: UUID | None, amount: Decimal, reason: str, now: datetime
    ) -> Payment:
        return cls(
            uuid4(), order_id, customer_id, amount, PaymentStatus.FAILED, reason, None, now, now
        )

    @property
    def needs_refund(self) -> bool:
        return self.status is PaymentStatus.COMPLETED

    @property
    def refunded_amount(self) -> Decimal:
        """What a refund gave (or would give) back: nothing unless money was taken."""
        return self.amount if self.status is PaymentStatus.REFUNDED else Decimal("0.00")

    def mark_refunded(self, now: datetime) -> None:
        if self.status is not PaymentStatus.COMPLETED:
            raise ValueError(f"cannot refund a {self.status} payment")
        self.status = PaymentStatus.REFUNDED
        self.updated_at = now
