"""Payment-provider adapters. The simulated one is the default; the HTTP one talks to a
card processor's REST API (charges and refunds, idempotent by key)."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol
from uuid import UUID

import httpx

from payment_service.settings import Settings
from shared_domain.breaker import Breaker
from shared_domain.failure_rates import FailureRate, FailureRates
from shared_domain.outbound import OutboundApi, json_object


class ProviderUnavailable(Exception):
    """The provider could not be reached or answered with a server error."""


class RefundRejected(Exception):
    """The provider refused the refund."""


@dataclass(frozen=True)
class ChargeResult:
    approved: bool
    reference: str | None = None
    decline_reason: str | None = None


class PaymentProvider(Protocol):
    async def charge(
        self, *, idempotency_key: str, amount: Decimal, customer_id: UUID
    ) -> ChargeResult: ...

    async def refund(self, *, idempotency_key: str, reference: str, amount: Decimal) -> str: ...

    async def close(self) -> None: ...


class SimulatedProvider:
    """Declines a share of charges (PAYMENT_FAILURE_RATE). Like a real processor it is
    idempotent by key: retrying the same charge gives the same answer."""

    def __init__(
        self, failure_rate: float | FailureRate, refund_failure_rate: float | FailureRate = 0.0
    ) -> None:
        self._charge = FailureRate.of("payment", failure_rate)
        self._refund = FailureRate.of("payment_refund", refund_failure_rate)

    @property
    def failure_rate(self) -> float:
        return self._charge.value

    @property
    def refund_failure_rate(self) -> float:
        return self._refund.value

    @staticmethod
    def _draw(key: str) -> float:
        return random.Random(hashlib.sha256(key.encode()).digest()).random()

    async def charge(
        self, *, idempotency_key: str, amount: Decimal, customer_id: UUID
    ) -> ChargeResult:
        if self.failure_rate and self._draw(idempotency_key) < self.failure_rate:
            return ChargeResult(False, decline_reason="card_declined")
        digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:16]
        return ChargeResult(True, reference=f"sim_ch_{digest}")

    async def refund(self, *, idempotency_key: str, reference: str, amount: Decimal) -> str:
        # Every refund attempt is a fresh draw, so a retried refund can succeed.
        if self.refund_failure_rate and random.random() < self.refund_failure_rate:
            raise ProviderUnavailable("simulated refund outage")
        return f"sim_re_{hashlib.sha256(idempotency_key.encode()).hexdigest()[:16]}"

    async def close(self) -> None:
        return None


class HttpProvider:
    """`POST /v1/charges` and `POST /v1/refunds` with an `Idempotency-Key` header.
    A 402 is a decline; 5xx, timeouts and connection errors are retried a few times with
    backoff and then reported as ProviderUnavailable."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        timeout: float,
        attempts: int = 3,
        backoff: float = 0.2,
        breaker: Breaker | None = None,
    ) -> None:
        self._api = OutboundApi(
            base_url,
            api_key,
            timeout,
            down=ProviderUnavailable,
            attempts=attempts,
            backoff=backoff,
            breaker=breaker,
        )

    async def charge(
        self, *, idempotency_key: str, amount: Decimal, customer_id: UUID
    ) -> ChargeResult:
        response = await self._api.post(
            "/v1/charges",
            idempotency_key,
            {"amount": f"{amount:.2f}", "currency": "USD", "customer": str(customer_id)},
        )
        if response.status_code == 402:
            error = _error(response)
            return ChargeResult(False, decline_reason=str(error.get("code") or "declined"))
        if response.status_code not in (200, 201):
            raise ProviderUnavailable(f"/v1/charges: unexpected HTTP {response.status_code}")
        body = json_object(response)
        if body.get("status") != "succeeded" or not body.get("id"):
            return ChargeResult(False, decline_reason=str(body.get("status") or "declined"))
        return ChargeResult(True, reference=str(body["id"]))

    async def refund(self, *, idempotency_key: str, reference: str, amount: Decimal) -> str:
        response = await self._api.post(
            "/v1/refunds", idempotency_key, {"charge": reference, "amount": f"{amount:.2f}"}
        )
        if response.status_code not in (200, 201):
            raise RefundRejected(
                str(_error(response).get("code") or f"HTTP {response.status_code}")
            )
        return str(json_object(response).get("id", ""))

    async def close(self) -> None:
        await self._api.close()


def _error(response: httpx.Response) -> dict[str, Any]:
    error = json_object(response).get("error")
    return error if isinstance(error, dict) else {}


def build_provider(
    settings: Settings, rates: FailureRates | None = None, breaker: Breaker | None = None
) -> PaymentProvider:
    if settings.payment_provider == "http":
        return HttpProvider(
            settings.payment_provider_url,
            settings.payment_provider_api_key,
            settings.payment_provider_timeout,
            breaker=breaker,
        )
    if rates is not None:  # the knobs an operator can turn while it runs
        return SimulatedProvider(rates["payment"], rates["payment_refund"])
    return SimulatedProvider(settings.payment_failure_rate, settings.payment_refund_failure_rate)
