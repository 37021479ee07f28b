from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path
from uuid import uuid4

import httpx
import pytest
import respx

from payment_service.provider import (
    ChargeResult,
    HttpProvider,
    ProviderUnavailable,
    RefundRejected,
    SimulatedProvider,
    build_provider,
)
from payment_service.settings import Settings

BASE = "https://pay.example"
CUSTOMER = uuid4()


@pytest.fixture
async def provider() -> AsyncIterator[HttpProvider]:
    client = HttpProvider(BASE, "sk_test", timeout=1.0, attempts=3, backoff=0.001)
    yield client
    await client.close()


@pytest.fixture
def api() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_called=False) as router:
        yield router


async def charge(provider: HttpProvider, amount: str = "12.5") -> ChargeResult:
    return await provider.charge(
        idempotency_key="order-1:charge", amount=Decimal(amount), customer_id=CUSTOMER
    )


async def test_successful_charge(provider: HttpProvider, api: respx.MockRouter) -> None:
    route = api.post("/v1/charges").respond(201, json={"id": "ch_123", "status": "succeeded"})

    result = await charge(provider)

    assert result == ChargeResult(approved=True, reference="ch_123")
    assert route.call_count == 1
    request = route.calls.last.request
    assert request.url == f"{BASE}/v1/charges"
    assert json.loads(request.content) == {
        "amount": "12.50",
        "currency": "USD",
        "customer": str(CUSTOMER),
    }
    assert request.headers["Idempotency-Key"] == "order-1:charge"
    assert request.headers["Authorization"] == "Bearer sk_test"


async def test_no_authorization_header_without_api_key(api: respx.MockRouter) -> None:
    route = api.post("/v1/charges").respond(200, json={"id": "ch_1", "status": "succeeded"})
    anonymous = HttpProvider(BASE, "", timeout=1.0, attempts=1, backoff=0.001)
    try:
        assert (await charge(anonymous)).approved
    finally:
        await anonymous.close()

    assert "Authorization" not in route.calls.last.request.headers


@pytest.mark.parametrize(("amount", "wire"), [("7", "7.00"), ("0.1", "0.10"), ("99.99", "99.99")])
async def test_amount_is_sent_with_two_decimals(
    provider: HttpProvider, api: respx.MockRouter, amount: str, wire: str
) -> None:
    route = api.post("/v1/charges").respond(200, json={"id": "ch_1", "status": "succeeded"})

    await charge(provider, amount)

    assert json.loads(route.calls.last.request.content)["amount"] == wire


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"error": {"code": "insufficient_funds"}}, "insufficient_funds"),
        ({"error": {}}, "declined"),
        ({}, "declined"),
    ],
)
async def test_402_is_a_decline(
    provider: HttpProvider, api: respx.MockRouter, body: dict[str, object], reason: str
) -> None:
    route = api.post("/v1/charges").respond(402, json=body)

    result = await charge(provider)

    assert result == ChargeResult(approved=False, decline_reason=reason)
    assert route.call_count == 1


async def test_charge_not_succeeded_is_a_decline(
    provider: HttpProvider, api: respx.MockRouter
) -> None:
    api.post("/v1/charges").respond(200, json={"id": "ch_1", "status": "requires_action"})

    assert await charge(provider) == ChargeResult(False, decline_reason="requires_action")


async def test_server_error_then_success_is_retried(
    provider: HttpProvider, api: respx.MockRouter
) -> None:
    route = api.post("/v1/charges").mock(
        side_effect=[
            httpx.Response(503),
            httpx.Response(502),
            httpx.Response(200, json={"id": "ch_9", "status": "succeeded"}),
        ]
    )

    result = await charge(provider)

    assert result == ChargeResult(approved=True, reference="ch_9")
    assert route.call_count == 3
    keys = {call.request.headers["Idempotency-Key"] for call in route.calls}
    assert keys == {"order-1:charge"}


@pytest.mark.parametrize("attempts", [1, 2, 4])
async def test_persistent_server_error_is_unavailable_after_all_attempts(
    api: respx.MockRouter, attempts: int
) -> None:
    route = api.post("/v1/charges").respond(500)
    client = HttpProvider(BASE, "k", timeout=1.0, attempts=attempts, backoff=0.001)
    try:
        with pytest.raises(ProviderUnavailable, match="HTTP 500"):
            await charge(client)
    finally:
        await client.close()

    assert route.call_count == attempts


@pytest.mark.parametrize("error", [httpx.ConnectTimeout, httpx.ReadTimeout, httpx.ConnectError])
async def test_transport_error_is_unavailable(
    provider: HttpProvider, api: respx.MockRouter, error: type[httpx.HTTPError]
) -> None:
    route = api.post("/v1/charges").mock(side_effect=error)

    with pytest.raises(ProviderUnavailable, match=error.__name__):
        await charge(provider)
    assert route.call_count == 3


async def test_unexpected_client_error_on_charge_is_unavailable(
    provider: HttpProvider, api: respx.MockRouter
) -> None:
    route = api.post("/v1/charges").respond(401, json={"error": {"code": "bad_key"}})

    with pytest.raises(ProviderUnavailable, match="unexpected HTTP 401"):
        await charge(provider)
    assert route.call_count == 1


async def test_refund_success(provider: HttpProvider, api: respx.MockRouter) -> None:
    route = api.post("/v1/refunds").respond(200, json={"id": "re_1"})

    reference = await provider.refund(
        idempotency_key="order-1:refund", reference="ch_123", amount=Decimal("12.5")
    )

    assert reference == "re_1"
    request = route.calls.last.request
    assert json.loads(request.content) == {"charge": "ch_123", "amount": "12.50"}
    assert request.headers["Idempotency-Key"] == "order-1:refund"
    assert request.headers["Authorization"] == "Bearer sk_test"


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (400, {"error": {"code": "charge_already_refunded"}}, "charge_already_refunded"),
        (404, {}, "HTTP 404"),
    ],
)
async def test_refund_rejection(
    provider: HttpProvider,
    api: respx.MockRouter,
    status: int,
    body: dict[str, object],
    message: str,
) -> None:
    route = api.post("/v1/refunds").respond(status, json=body)

    with pytest.raises(RefundRejected, match=message):
        await provider.refund(idempotency_key="k", reference="ch_1", amount=Decimal("1.00"))
    assert route.call_count == 1


async def test_refund_server_error_is_unavailable(
    provider: HttpProvider, api: respx.MockRouter
) -> None:
    route = api.post("/v1/refunds").respond(503)

    with pytest.raises(ProviderUnavailable):
        await provider.refund(idempotency_key="k", reference="ch_1", amount=Decimal("1.00"))
    assert route.call_count == 3


# ------------------------------------------------------------------ simulated


async def simulated_charge(sim: SimulatedProvider, key: str) -> ChargeResult:
    return await sim.charge(idempotency_key=key, amount=Decimal("10.00"), customer_id=CUSTOMER)


async def test_simulated_rate_zero_always_approves() -> None:
    sim = SimulatedProvider(0.0)

    results = [await simulated_charge(sim, f"order-{n}") for n in range(50)]

    assert all(r.approved for r in results)
    assert all(r.reference and r.reference.startswith("sim_ch_") for r in results)
    assert len({r.reference for r in results}) == 50


async def test_simulated_rate_one_always_declines() -> None:
    sim = SimulatedProvider(1.0)

    results = [await simulated_charge(sim, f"order-{n}") for n in range(50)]

    assert all(r == ChargeResult(False, decline_reason="card_declined") for r in results)


async def test_simulated_answer_is_deterministic_per_key() -> None:
    sim = SimulatedProvider(0.5)
    keys = [f"order-{n}" for n in range(40)]

    first = [await simulated_charge(sim, key) for key in keys]
    again = [await simulated_charge(SimulatedProvider(0.5), key) for key in keys]

    assert first == again
    assert {r.approved for r in first} == {True, False}


async def test_simulated_refund_outage() -> None:
    sim = SimulatedProvider(0.0, refund_failure_rate=1.0)

    with pytest.raises(ProviderUnavailable):
        await sim.refund(idempotency_key="k", reference="sim_ch_1", amount=Decimal("1.00"))


async def test_simulated_refund_is_idempotent_by_key() -> None:
    sim = SimulatedProvider(0.0)

    first = await sim.refund(idempotency_key="k", reference="r", amount=Decimal("1.00"))
    second = await sim.refund(idempotency_key="k", reference="r", amount=Decimal("1.00"))

    assert first == second
    assert first.startswith("sim_re_")


async def test_build_provider_follows_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PAYMENT_FAILURE_RATE", "0.4")
    monkeypatch.setenv("PAYMENT_REFUND_FAILURE_RATE", "0.2")
    monkeypatch.delenv("PAYMENT_PROVIDER", raising=False)

    simulated = build_provider(Settings())

    assert isinstance(simulated, SimulatedProvider)
    assert (simulated.failure_rate, simulated.refund_failure_rate) == (0.4, 0.2)

    monkeypatch.setenv("PAYMENT_PROVIDER", "http")
    http = build_provider(Settings())
    assert isinstance(http, HttpProvider)
    await http.close()
