"""The carrier adapter: a simulated carrier that refuses a share of bookings
(SHIPPING_FAILURE_RATE)."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from uuid import UUID

from shared_domain.failure_rates import FailureRate

CARRIERS = ("UPS", "FedEx", "DHL")


@dataclass(frozen=True)
class Booking:
    carrier: str
    tracking_number: str


class CarrierUnavailable(Exception):
    pass


class SimulatedCarrier:
    def __init__(self, failure_rate: float | FailureRate) -> None:
        self._rate = FailureRate.of("shipping", failure_rate)

    @property
    def failure_rate(self) -> float:
        return self._rate.value

    async def book(self, order_id: UUID) -> Booking:
        if self.failure_rate and random.random() < self.failure_rate:
            raise CarrierUnavailable("no carrier accepted the shipment")
        digest = hashlib.sha256(order_id.bytes).hexdigest().upper()
        carrier = CARRIERS[int(digest[:2], 16) % len(CARRIERS)]
        return Booking(carrier, f"{carrier[:2].upper()}{digest[2:14]}")
