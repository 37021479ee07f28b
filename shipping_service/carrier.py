"""Carrier adapters: the simulated carrier, which refuses a share of bookings
(SHIPPING_FAILURE_RATE), and the HTTP one, a carrier's REST API (bookings idempotent by
key) called through the shipping service's circuit breaker."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Any, Protocol
from uuid import UUID

from shared_domain.breaker import Breaker
from shared_domain.failure_rates import FailureRate, FailureRates
from shared_domain.outbound import OutboundApi, json_object
from shipping_service.settings import Settings

CARRIERS = ("UPS", "FedEx", "DHL")


@dataclass(frozen=True)
class Booking:
    carrier: str
    tracking_number: str


class CarrierUnavailable(Exception):
    """No carrier took the shipment: the booking fails."""


class CarrierDown(CarrierUnavailable):
    """The carrier's API could not be reached or answered with a server error: an
    outage, which its circuit breaker counts."""


class Carrier(Protocol):
    async def book(self, order_id: UUID, address: dict[str, Any]) -> Booking: ...

    async def close(self) -> None: ...


class SimulatedCarrier:
    def __init__(self, failure_rate: float | FailureRate) -> None:
        self._rate = FailureRate.of("shipping", failure_rate)

    @property
    def failure_rate(self) -> float:
        return self._rate.value

    async def book(self, order_id: UUID, address: dict[str, Any]) -> Booking:
        if self.failure_rate and random.random() < self.failure_rate:
            raise CarrierUnavailable("no carrier accepted the shipment")
        digest = hashlib.sha256(order_id.bytes).hexdigest().upper()
        carrier = CARRIERS[int(digest[:2], 16) % len(CARRIERS)]
        return Booking(carrier, f"{carrier[:2].upper()}{digest[2:14]}")

    async def close(self) -> None:
        return None


class HttpCarrier:
    """`POST /v1/shipments` with the order id as `Idempotency-Key`: 200 or 201 with
    `carrier` and `tracking_number` is a booking, another 4xx a refusal (the booking
    fails), and 5xx, timeouts and connection errors are tried again, then CarrierDown."""

    def __init__(
        self, base_url: str, api_key: str, timeout: float, breaker: Breaker | None = None
    ) -> None:
        self._api = OutboundApi(base_url, api_key, timeout, down=CarrierDown, breaker=breaker)

    async def book(self, order_id: UUID, address: dict[str, Any]) -> Booking:
        response = await self._api.post(
            "/v1/shipments", str(order_id), {"reference": str(order_id), "address": address}
        )
        body = json_object(response)
        if response.status_code in (200, 201) and body.get("tracking_number"):
            return Booking(str(body.get("carrier") or "carrier"), str(body["tracking_number"]))
        error = body.get("error")
        code = error.get("code") if isinstance(error, dict) else None
        raise CarrierUnavailable(f"refused: {code or f'HTTP {response.status_code}'}")

    async def close(self) -> None:
        await self._api.close()


def build_carrier(
    settings: Settings, rates: FailureRates | None = None, breaker: Breaker | None = None
) -> Carrier:
    if settings.shipping_carrier == "http":
        return HttpCarrier(
            settings.shipping_carrier_url,
            settings.shipping_carrier_api_key,
            settings.shipping_carrier_timeout,
            breaker=breaker,
        )
    return SimulatedCarrier(
        rates["shipping"] if rates is not None else settings.shipping_failure_rate
    )
