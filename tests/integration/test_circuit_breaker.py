"""The payment service's circuit breaker around a card processor that goes down under
load (the processor mocked with respx; the service, its broker and database real): the
breaker opens, no call reaches the processor while it is open, a probe closes it once
the processor is back, and every charge is answered once, none made twice."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import httpx
import pytest
import respx
from aio_pika.abc import AbstractChannel
from prometheus_client import REGISTRY

from shared_domain.breaker import OPEN
from shared_domain.contracts import COMMANDS_EXCHANGE, EVENTS_EXCHANGE, Envelope, MessageType
from shared_domain.runtime import Runtime
from tests.integration.conftest import PAYMENT, PaymentSettings, capture, open_runtime

pytestmark = pytest.mark.integration

PROVIDER = "http://processor.test"
RESET = 1.0  # seconds the breaker stays open before its probe
ORDERS = 24


class Processor:
    """A card processor idempotent by key, that can be taken down (503) and back."""

    def __init__(self) -> None:
        self.down = False
        self.calls: list[float] = []  # when each request arrived (monotonic)
        self.charges: dict[str, str] = {}  # idempotency key -> charge id
        self.created: Counter[str] = Counter()  # charges made per key

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(time.monotonic())
        if self.down:
            return httpx.Response(503, json={"error": {"code": "unavailable"}})
        key = request.headers["Idempotency-Key"]
        if key not in self.charges:
            self.charges[key] = f"ch_{uuid.uuid4().hex[:12]}"
            self.created[key] += 1
        return httpx.Response(201, json={"id": self.charges[key], "status": "succeeded"})


@pytest.fixture
async def processor() -> AsyncIterator[Processor]:
    mock = Processor()
    with respx.mock(base_url=PROVIDER, assert_all_called=False) as router:
        router.post("/v1/charges").mock(side_effect=mock)
        yield mock


@pytest.fixture
async def payments(
    processor: Processor, vhost: str, db_prefix: str, channel: AbstractChannel
) -> AsyncIterator[Runtime[PaymentSettings]]:
    declared = await open_runtime(PAYMENT, PaymentSettings, vhost, db_prefix)
    await declared.stop()
    for name in ("payment_service.commands", "payment_service.commands.retry"):
        await (await channel.get_queue(name)).purge()  # what other tests left there
    rt = await open_runtime(
        PAYMENT,
        PaymentSettings,
        vhost,
        db_prefix,
        consuming=True,
        PAYMENT_PROVIDER="http",
        PAYMENT_PROVIDER_URL=PROVIDER,
        CIRCUIT_BREAKER_THRESHOLD=3,
        CIRCUIT_BREAKER_RESET_SECONDS=RESET,
        RETRY_MAX_DELAY=0.3,
    )
    yield rt
    await rt.stop()


def charge(order_id: uuid.UUID) -> Envelope:
    return Envelope(
        type=MessageType.PAYMENT_PROCESS.value,
        saga_id=uuid.uuid4(),
        order_id=order_id,
        correlation_id="breaker",
        source="saga_orchestrator",
        payload={"customer_id": str(uuid.uuid4()), "amount": "25.00"},
    )


def sample(name: str) -> float:
    return REGISTRY.get_sample_value(name, {"breaker": "payment_provider"}) or 0.0


async def test_the_breaker_opens_on_an_outage_holds_calls_back_and_closes_on_a_probe(
    payments: Runtime[PaymentSettings], processor: Processor, channel: AbstractChannel
) -> None:
    replies = await capture(channel, EVENTS_EXCHANGE, "payment.*")
    exchange = await channel.get_exchange(COMMANDS_EXCHANGE)
    opened, refused = (
        sample("circuit_breaker_opened_total"),
        sample("circuit_breaker_refused_total"),
    )
    orders = [uuid.uuid4() for _ in range(ORDERS)]

    async def send(order_id: uuid.UUID) -> None:
        message = charge(order_id)
        await exchange.publish(
            aio_pika.Message(
                message.model_dump_json().encode(), message_id=str(message.message_id)
            ),
            routing_key=message.type,
        )

    for order_id in orders[:4]:  # the processor is up
        await send(order_id)
        await asyncio.sleep(0.05)
    processor.down = True
    down_at = time.monotonic()
    for order_id in orders[4:20]:  # under load while it is down
        await send(order_id)
        await asyncio.sleep(0.1)
    await asyncio.sleep(max(0.0, down_at + 3 * RESET - time.monotonic()))
    processor.down = False
    for order_id in orders[20:]:
        await send(order_id)

    answered: dict[str, dict[str, Any]] = {}
    while len(answered) < ORDERS:
        reply = json.loads((await replies.next(timeout=30)).body)
        answered[reply["order_id"]] = reply
    assert set(answered) == {str(o) for o in orders}, "every charge is answered"
    assert await replies.nothing_within(1.0), "and answered once"

    breaker = payments.breakers["payment_provider"]
    assert breaker.state == "closed", "the probe closed it once the processor was back"
    openings = [at for at, state in breaker.changes if state == OPEN]
    assert openings, "the outage opened the breaker"
    for at in openings:  # while open, until the probe is due, nothing reaches the processor
        assert not [t for t in processor.calls if at < t < at + RESET], at
    assert sample("circuit_breaker_opened_total") - opened == len(openings)
    assert sample("circuit_breaker_refused_total") > refused, "commands were held back"

    outcomes = Counter(r["type"] for r in answered.values())
    failed = [r for r in answered.values() if r["type"] == MessageType.PAYMENT_FAILED.value]
    # Only the charges that met the outage before the breaker opened are declined.
    assert all(r["payload"]["reason"].startswith("provider_unavailable") for r in failed)
    assert len(failed) >= payments.settings.circuit_breaker_threshold
    # the four before, the four after, and the ones held back while it was open
    assert outcomes[MessageType.PAYMENT_PROCESSED.value] == ORDERS - len(failed) > 8
    assert all(count == 1 for count in processor.created.values()), "no order charged twice"
    async with payments.pool.acquire() as conn:
        rows = await conn.fetch("SELECT order_id, status FROM payments")
    assert Counter(r["order_id"] for r in rows) == Counter(orders), "one payment per order"
