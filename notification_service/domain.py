"""Notifications: one per order and kind. Pure logic, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from uuid import UUID, uuid4

from shared_domain.contracts import NotificationKind


class NotificationStatus(StrEnum):
    SENT = "sent"
    FAILED = "failed"


SUBJECTS = {
    NotificationKind.ORDER_CONFIRMATION: "Your order {order} is confirmed",
    NotificationKind.ORDER_CANCELLED: "Your order {order} was cancelled",
}


@dataclass
class Notification:
    id: UUID
    order_id: UUID
    customer_id: UUID
    kind: NotificationKind
    channel: str
    subject: str
    status: NotificationStatus
    attempts: int
    error: str | None
    created_at: datetime
    updated_at: datetime
    saga_id: UUID | None = None  # the saga whose command made it

    @classmethod
    def record(
        cls,
        order_id: UUID,
        customer_id: UUID,
        kind: NotificationKind,
        attempts: int,
        error: str | None,
        now: datetime,
    ) -> Notification:
        return cls(
            uuid4(),
            order_id,
            customer_id,
            kind,
            "email",
            SUBJECTS[kind].format(order=order_id),
            NotificationStatus.FAILED if error else NotificationStatus.SENT,
            attempts,
            error,
            now,
            now,
        )
