"""Dead-letter routing and retries with the real broker: a poison message goes straight
to the DLQ with its reason and never stops the consumer; a transient failure is retried
with backoff, then dead-lettered once the retries are used up; a message waiting for an
earlier one is tried again by the clock (MESSAGE_MAX_WAIT), not by the retry count."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import aio_pika
import asyncpg
import pytest
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage
from prometheus_client import REGISTRY

from shared_domain.backoff import Backoff
from shared_domain.contracts import COMMANDS_EXCHANGE, Envelope, MessageType
from shared_domain.messaging.consumer import Consumer, PermanentError, WaitingFor
from shared_domain.messaging.topology import PAYMENT_COMMANDS

pytestmark = pytest.mark.integration

Handler = Callable[[Envelope, object], Awaitable[None]]


def envelope(payload: dict | None = None, type_: str = "payment.process") -> Envelope:
    return Envelope(
        type=type_,
        saga_id=uuid.uuid4(),
        order_id=uuid.uuid4(),
        correlation_id="t",
        source="test",
        payload={"customer_id": str(uuid.uuid4()), "amount": "10.00"}
        if payload is None
        else payload,
    )


async def publish(channel: AbstractChannel, body: bytes, key: str = "payment.process") -> str:
    exchange = await channel.get_exchange(COMMANDS_EXCHANGE)
    message_id = str(uuid.uuid4())
    await exchange.publish(aio_pika.Message(body, message_id=message_id), routing_key=key)
    return message_id


async def dead_letter(channel: AbstractChannel, timeout: float = 5) -> AbstractIncomingMessage:
    queue = await channel.get_queue(PAYMENT_COMMANDS.dlq)
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        message = await queue.get(no_ack=True, fail=False)
        if message is not None:
            return message
        await asyncio.sleep(0.05)
    raise AssertionError("nothing arrived in the dead-letter queue")


@pytest.fixture
async def consume(payment_rt, channel) -> AsyncIterator[Callable[..., Awaitable[list]]]:
    for name in (PAYMENT_COMMANDS.name, PAYMENT_COMMANDS.dlq, PAYMENT_COMMANDS.retry):
        await (await channel.get_queue(name)).purge()
    consumers: list[Consumer] = []

    async def start(handler: Handler, max_wait: float = 600.0) -> list:
        consumer = Consumer(
            payment_rt.broker,
            PAYMENT_COMMANDS,
            {MessageType.PAYMENT_PROCESS: handler},
            max_retries=2,
            max_wait=max_wait,
            backoff=Backoff(0.05, 0.2),
            service="test",
        )
        await consumer.start()
        consumers.append(consumer)
        return []

    yield start
    for consumer in consumers:
        await consumer.stop()


def consumed(type_: str, outcome: str) -> float:
    labels = {"queue": PAYMENT_COMMANDS.name, "type": type_, "outcome": outcome}
    return REGISTRY.get_sample_value("messages_consumed_total", labels) or 0.0


async def wait_for(predicate: Callable[[], bool], timeout: float = 5) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


@pytest.mark.parametrize(
    ("body", "key", "expected_error"),
    [
        (b"{not json", "payment.process", "validation failed"),
        (
            envelope(type_="payment.teleport").model_dump_json().encode(),
            "payment.process",
            "payment.teleport",
        ),
        (
            envelope(payload={"customer_id": "nope"}).model_dump_json().encode(),
            "payment.process",
            "amount",
        ),
        (
            envelope(type_="payment.refund", payload={"reason": "x"}).model_dump_json().encode(),
            "payment.refund",
            "has no handler",
        ),
    ],
    ids=["malformed-json", "unknown-type", "invalid-payload", "no-handler"],
)
async def test_poison_message_goes_straight_to_the_dlq(consume, channel, body, key, expected_error):
    handled: list[Envelope] = []

    async def handler(env: Envelope, _payload: object) -> None:
        handled.append(env)

    await consume(handler)
    before = consumed("unknown", "dead_lettered")
    poison_id = await publish(channel, body, key)
    dead = await dead_letter(channel)
    assert dead.message_id == poison_id
    assert dead.body == body
    assert dead.headers["x-dead-letter-reason"] == "invalid_message"
    assert expected_error in str(dead.headers["x-error"])
    assert dead.headers["x-original-routing-key"] == key
    # counted once; sent without an AMQP type, it is counted under "unknown"
    await wait_for(lambda: consumed("unknown", "dead_lettered") == before + 1)

    good = envelope()
    await publish(channel, good.model_dump_json().encode())
    await wait_for(lambda: len(handled) == 1)
    assert handled[0].message_id == good.message_id, "the consumer keeps working"


async def test_transient_failure_is_retried_with_backoff_then_succeeds(consume, channel):
    attempts: list[float] = []

    async def flaky(env: Envelope, _payload: object) -> None:
        attempts.append(asyncio.get_running_loop().time())
        if len(attempts) < 3:
            raise ConnectionError("database went away")

    await consume(flaky)
    await publish(channel, envelope().model_dump_json().encode())
    await wait_for(lambda: len(attempts) == 3)
    assert attempts[1] - attempts[0] >= 0.02
    assert attempts[2] - attempts[1] >= 0.04
    queue = await channel.get_queue(PAYMENT_COMMANDS.dlq)
    await asyncio.sleep(0.3)
    assert await queue.get(no_ack=True, fail=False) is None
    assert len(attempts) == 3


async def test_retries_are_bounded_then_dead_lettered(consume, channel):
    attempts = 0

    async def broken(env: Envelope, _payload: object) -> None:
        nonlocal attempts
        attempts += 1
        raise TimeoutError("downstream timeout")

    await consume(broken)
    retried, dead_lettered = (
        consumed("payment.process", "retried"),
        consumed("payment.process", "dead_lettered"),
    )
    message_id = await publish(channel, envelope().model_dump_json().encode())
    dead = await dead_letter(channel)
    await wait_for(lambda: consumed("payment.process", "dead_lettered") == dead_lettered + 1)
    assert consumed("payment.process", "retried") == retried + 2
    assert dead.message_id == message_id
    assert attempts == 3  # the first try and max_retries=2 retries
    assert dead.headers["x-dead-letter-reason"] == "retries_exhausted"
    assert dead.headers["x-retry-count"] == 2
    assert "TimeoutError: downstream timeout" in str(dead.headers["x-error"])


@pytest.mark.parametrize(
    "failure",
    [
        lambda: asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
        lambda: WaitingFor("its predecessor is not handled yet"),
    ],
    ids=["outage", "waiting-for-an-earlier-message"],
)
async def test_an_outage_or_a_wait_is_retried_past_the_retry_budget(consume, channel, failure):
    """A database that is down says nothing about the message, nor does a message that
    came before the one it follows: neither is dead-lettered for spending the retries."""
    attempts = 0

    async def not_yet(env: Envelope, _payload: object) -> None:
        nonlocal attempts
        attempts += 1
        if attempts <= 5:  # more than max_retries=2
            raise failure()

    await consume(not_yet)
    await publish(channel, envelope().model_dump_json().encode())
    await wait_for(lambda: attempts == 6, timeout=10)
    await asyncio.sleep(0.3)
    queue = await channel.get_queue(PAYMENT_COMMANDS.dlq)
    assert await queue.get(no_ack=True, fail=False) is None
    assert attempts == 6


async def test_permanent_error_is_dead_lettered_without_retry(consume, channel):
    attempts = 0

    async def refuses(env: Envelope, _payload: object) -> None:
        nonlocal attempts
        attempts += 1
        raise PermanentError("order belongs to no saga")

    await consume(refuses)
    await publish(channel, envelope().model_dump_json().encode())
    dead = await dead_letter(channel)
    assert dead.headers["x-dead-letter-reason"] == "rejected"
    assert "no saga" in str(dead.headers["x-error"])
    assert attempts == 1


async def test_a_message_that_waits_too_long_is_dead_lettered(consume, channel):
    attempts = 0

    async def never_followed(env: Envelope, _payload: object) -> None:
        nonlocal attempts
        attempts += 1
        raise WaitingFor("its predecessor never came")

    await consume(never_followed, max_wait=1.0)
    message_id = await publish(channel, envelope().model_dump_json().encode())
    dead = await dead_letter(channel, timeout=10)
    assert dead.message_id == message_id
    assert attempts > 3, "waited by the clock, past the retry budget"
    assert dead.headers["x-dead-letter-reason"] == "retries_exhausted"
    assert "for an earlier message" in str(dead.headers["x-error"])
    assert "its predecessor never came" in str(dead.headers["x-error"])
