"""Shipments: one per order. Pure logic, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID, uuid4


class ShipmentStatus(StrEnum):
    CREATED = "created"
    FAILED = "failed"
    CANCELLED = "cancelled"


NOT_CREATED = "cancelled before a shipment was created"


@dataclass
class Shipment:
    id: UUID
    order_id: UUID
    status: ShipmentStatus
    carrier: str | None
    tracking_number: str | None
    shipping_address: dict[str, Any]
    failure_reason: str | None
    created_at: datetime
    updated_at: datetime
    customer_id: UUID | None = None  # whose it is (None: a tombstone, or an older command)
    saga_id: UUID | None = None  # the saga whose command made it

    @classmethod
    def booked(
        cls, order_id: UUID, carrier: str, tracking: str, address: dict[str, Any], now: datetime
    ) -> Shipment:
        return cls(
            uuid4(), order_id, ShipmentStatus.CREATED, carrier, tracking, address, None, now, now
        )

    @classmethod
    def refused(
        cls, order_id: UUID, reason: str, address: dict[str, Any], now: datetime
    ) -> Shipment:
        return cls(uuid4(), order_id, ShipmentStatus.FAILED, None, None, address, reason, now, now)

    @classmethod
    def cancelled_before_creation(cls, order_id: UUID, now: datetime) -> Shipment:
        return cls(
            uuid4(), order_id, ShipmentStatus.CANCELLED, None, None, {}, NOT_CREATED, now, now
        )

    def cancel(self, now: datetime) -> None:
        if self.status is ShipmentStatus.CREATED:
            self.status = ShipmentStatus.CANCELLED
            self.updated_at = now
