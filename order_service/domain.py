"""Orders and their status. Pure logic, no I/O.

pending -> processing -> completed | cancelled | failed. Status events may arrive out
of order, so any non-terminal order may move to a later status. Completed and cancelled
never move again. Failed means "a compensation could not be done, a human must look";
once an operator has the saga retried, its outcome (cancelled) replaces it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from typing import Any
from uuid import UUID, uuid4


class OrderStatus(StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    FAILED = "failed"


TERMINAL = frozenset({OrderStatus.COMPLETED, OrderStatus.CANCELLED, OrderStatus.FAILED})
# Never move again; also the only statuses a failed order may still move to.
FINAL = frozenset({OrderStatus.COMPLETED, OrderStatus.CANCELLED})
CENT = Decimal("0.01")


@dataclass(frozen=True)
class OrderLine:
    product_id: UUID
    quantity: int
    price: Decimal

    @property
    def subtotal(self) -> Decimal:
        return (self.price * self.quantity).quantize(CENT, ROUND_HALF_UP)


@dataclass(frozen=True)
class StatusChange:
    status: OrderStatus
    reason: str | None
    at: datetime


@dataclass
class Order:
    id: UUID
    customer_id: UUID
    items: list[OrderLine]
    total_amount: Decimal
    status: OrderStatus
    shipping_address: dict[str, Any]
    saga_id: UUID
    failure_reason: str | None
    created_at: datetime
    updated_at: datetime
    idempotency_key: str | None = None
    request_fingerprint: str | None = None
    # Choreography: when the order service unwound the saga for having no outcome in time.
    unwound_at: datetime | None = None
    changes: list[StatusChange] = field(default_factory=list)

    @classmethod
    def place(
        cls,
        customer_id: UUID,
        items: list[OrderLine],
        shipping_address: dict[str, Any],
        now: datetime,
        idempotency_key: str | None = None,
        request_fingerprint: str | None = None,
    ) -> Order:
        if not items:
            raise ValueError("an order needs at least one item")
        total = sum((line.subtotal for line in items), Decimal("0.00")).quantize(CENT)
        order = cls(
            uuid4(),
            customer_id,
            list(items),
            total,
            OrderStatus.PENDING,
            shipping_address,
            uuid4(),
            None,
            now,
            now,
            idempotency_key,
            request_fingerprint,
        )
        order.changes.append(StatusChange(OrderStatus.PENDING, "order placed", now))
        return order

    def settle(self, status: OrderStatus, reason: str | None, now: datetime) -> bool:
        """Choreography: as `move_to`, but a failed order stays failed. With no conductor
        there is no operator retry whose outcome could replace it, and the undos still
        running after the one that failed must not turn it into a plain cancellation."""
        if self.status is OrderStatus.FAILED:
            return False
        if self.unwound_at is not None and status is OrderStatus.COMPLETED:
            return False  # a late success of a saga that was unwound: it is being undone
        return self.move_to(status, reason, now)

    def unwind(self, now: datetime) -> bool:
        """Choreography: the saga had no outcome in time; its undos are started. False
        when it has ended or was unwound already."""
        if self.status in TERMINAL or self.unwound_at is not None:
            return False
        self.unwound_at = self.updated_at = now
        return True

    def move_to(self, status: OrderStatus, reason: str | None, now: datetime) -> bool:
        """Apply a status event; False when it does not apply (stale or duplicate)."""
        if self.status in FINAL or status == self.status:
            return False
        if self.status is OrderStatus.FAILED and status not in FINAL:
            return False
        if status is OrderStatus.PENDING:
            return False
        self.status = status
        self.updated_at = now
        if status in (OrderStatus.CANCELLED, OrderStatus.FAILED):
            self.failure_reason = reason
        self.changes.append(StatusChange(status, reason, now))
        return True
