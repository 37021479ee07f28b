"""The circuit breakers around the outside providers, one suite run against each: the
payment service's card processor and the shipping service's carrier, mocked with
respx (the services, their broker and database real). The provider goes down under
load: the breaker opens, no call reaches the provider while it is open, a probe closes
it once the provider is back, and every command is answered once, its work done once."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aio_pika
import httpx
import pytest
import respx
from aio_pika.abc import AbstractChannel
from prometheus_client import REGISTRY

from shared_domain.breaker import OPEN
from shared_domain.contracts import COMMANDS_EXCHANGE, EVENTS_EXCHANGE, Envelope, MessageType
from shared_domain.runtime import Runtime, ServiceDefinition
from shared_domain.settings import ServiceSettings
from tests.integration.conftest import (
    PAYMENT,
    SHIPPING,
    PaymentSettings,
    ShippingSettings,
    capture,
    open_runtime,
)

pytestmark = pytest.mark.integration

BASE_URL = "http://provider.test"
RESET = 1.0  # seconds the breaker stays open before its probe
COMMANDS = 24
ADDRESS = {"street": "1 Main St", "city": "Springfield", "state": "IL", "zip_code": "62701",
           "country": "US"}  # fmt: skip


@dataclass(frozen=True)
class Provider:
    """A service with a provider behind a breaker, and what its suite needs of it."""

    definition: ServiceDefinition[Any]
    settings: type[ServiceSettings]
    env: dict[str, str]
    breaker: str
    path: str
    done: Callable[[str], dict[str, Any]]  # the provider's answer for a key
    command: MessageType
    payload: dict[str, Any]
    succeeded: MessageType
    failed: MessageType
    outage: str  # how a command that met the outage is answered
    table: str

    @property
    def id(self) -> str:
        return self.breaker


PROVIDERS = [
    Provider(
        PAYMENT,
        PaymentSettings,
        {"PAYMENT_PROVIDER": "http", "PAYMENT_PROVIDER_URL": BASE_URL},
        "payment_provider",
        "/v1/charges",
        lambda key: {"id": f"ch_{uuid.uuid4().hex[:12]}", "status": "succeeded"},
        MessageType.PAYMENT_PROCESS,
        {"customer_id": str(uuid.uuid4()), "amount": "25.00"},
        MessageType.PAYMENT_PROCESSED,
        MessageType.PAYMENT_FAILED,
        "provider_unavailable",
        "payments",
    ),
    Provider(
        SHIPPING,
        ShippingSettings,
        {"SHIPPING_CARRIER": "http", "SHIPPING_CARRIER_URL": BASE_URL},
        "carrier",
        "/v1/shipments",
        lambda key: {"carrier": "UPS", "tracking_number": f"1Z{uuid.uuid4().hex[:10]}"},
        MessageType.SHIPPING_CREATE,
        {
            "items": [{"product_id": str(uuid.uuid4()), "quantity": 1, "price": "25.00"}],
            "shipping_address": ADDRESS,
        },
        MessageType.SHIPPING_CREATED,
        MessageType.SHIPPING_FAILED,
        "carrier_unavailable",
        "shipments",
    ),
]


class Mock:
    """A provider idempotent by key, that can be taken down (503) and back."""

    def __init__(self, provider: Provider) -> None:
        self._provider = provider
        self.down = False
        self.calls: list[float] = []  # when each request arrived (monotonic)
        self.answers: dict[str, dict[str, Any]] = {}  # idempotency key -> the work done
        self.done: Counter[str] = Counter()  # work done per key

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(time.monotonic())
        if self.down:
            return httpx.Response(503, json={"error": {"code": "unavailable"}})
        key = request.headers["Idempotency-Key"]
        if key not in self.answers:
            self.answers[key] = self._provider.done(key)
            self.done[key] += 1
        return httpx.Response(201, json=self.answers[key])


@dataclass
class Service:
    rt: Runtime[Any]
    provider: Provider
    mock: Mock


@pytest.fixture(params=PROVIDERS, ids=lambda p: p.id)
async def service(
    request: pytest.FixtureRequest, vhost: str, db_prefix: str, channel: AbstractChannel
) -> AsyncIterator[Service]:
    provider: Provider = request.param
    spec = provider.definition.queue
    declared = await open_runtime(provider.definition, provider.settings, vhost, db_prefix)
    await declared.stop()
    for name in (spec.name, spec.retry):
        await (await channel.get_queue(name)).purge()  # what other tests left there
    mock = Mock(provider)
    with respx.mock(base_url=BASE_URL, assert_all_called=False) as router:
        router.post(provider.path).mock(side_effect=mock)
        rt = await open_runtime(
            provider.definition,
            provider.settings,
            vhost,
            db_prefix,
            consuming=True,
            CIRCUIT_BREAKER_THRESHOLD=3,
            CIRCUIT_BREAKER_RESET_SECONDS=RESET,
            RETRY_MAX_DELAY=0.3,
            **provider.env,
        )
        try:
            yield Service(rt, provider, mock)
        finally:
            await rt.stop()


def sample(name: str, breaker: str) -> float:
    return REGISTRY.get_sample_value(name, {"breaker": breaker}) or 0.0


async def test_the_breaker_opens_on_an_outage_holds_calls_back_and_closes_on_a_probe(
    service: Service, channel: AbstractChannel
) -> None:
    provider, mock = service.provider, service.mock
    prefix = provider.command.value.split(".")[0]
    replies = await capture(channel, EVENTS_EXCHANGE, f"{prefix}.*")
    exchange = await channel.get_exchange(COMMANDS_EXCHANGE)
    opened = sample("circuit_breaker_opened_total", provider.breaker)
    refused = sample("circuit_breaker_refused_total", provider.breaker)
    orders = [uuid.uuid4() for _ in range(COMMANDS)]

    async def send(order_id: uuid.UUID) -> None:
        message = Envelope(
            type=provider.command.value,
            saga_id=uuid.uuid4(),
            order_id=order_id,
            correlation_id="breaker",
            source="saga_orchestrator",
            payload=provider.payload,
        )
        body = message.model_dump_json().encode()
        await exchange.publish(
            aio_pika.Message(body, message_id=str(message.message_id)), routing_key=message.type
        )

    for order_id in orders[:4]:  # the provider is up
        await send(order_id)
        await asyncio.sleep(0.05)
    mock.down = True
    down_at = time.monotonic()
    for order_id in orders[4:20]:  # under load while it is down
        await send(order_id)
        await asyncio.sleep(0.1)
    await asyncio.sleep(max(0.0, down_at + 3 * RESET - time.monotonic()))
    mock.down = False
    for order_id in orders[20:]:
        await send(order_id)

    answered: dict[str, dict[str, Any]] = {}
    while len(answered) < COMMANDS:
        reply = json.loads((await replies.next(timeout=30)).body)
        answered.setdefault(reply["order_id"], reply)
    assert set(answered) == {str(o) for o in orders}, "every command is answered"
    # ... once: a reply may be published twice (the outbox delivers at least once, and
    # the orchestrator's inbox drops the copy), but it is the same message
    while not await replies.nothing_within(1.0):
        again = json.loads((await replies.next()).body)
        assert again["message_id"] == answered[again["order_id"]]["message_id"], again

    breaker = service.rt.breakers[provider.breaker]
    assert breaker.state == "closed", "the probe closed it once the provider was back"
    openings = [at for at, state in breaker.changes if state == OPEN]
    assert openings, "the outage opened the breaker"
    for at in openings:  # while open, until the probe is due, nothing reaches the provider
        assert not [t for t in mock.calls if at < t < at + RESET], at
    assert sample("circuit_breaker_opened_total", provider.breaker) - opened == len(openings)
    assert sample("circuit_breaker_refused_total", provider.breaker) > refused

    outcomes = Counter(r["type"] for r in answered.values())
    failed = [r for r in answered.values() if r["type"] == provider.failed.value]
    # Only the commands that met the outage before the breaker opened (and the probe
    # that found it still down) fail.
    assert all(r["payload"]["reason"].startswith(provider.outage) for r in failed), failed
    assert len(failed) >= service.rt.settings.circuit_breaker_threshold
    # the four before, the four after, and the ones held back while it was open
    assert outcomes[provider.succeeded.value] == COMMANDS - len(failed) > 8
    assert all(count == 1 for count in mock.done.values()), "no work done twice"
    async with service.rt.pool.acquire() as conn:
        rows = await conn.fetch(f"SELECT order_id FROM {provider.table}")
    assert Counter(r["order_id"] for r in rows) == Counter(orders), "one record per order"
