"""Messages no consumer should take, thrown at each service as it runs (its own consumer,
batcher and background loops, the real broker and database): too large, nested past
the parser, another content type, the wrong sender, and whatever hypothesis makes of
an envelope. Each one is dead-lettered with its reason, the service's tables stay as
they were, and the consumer goes on consuming."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aio_pika
import pytest
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from order_service import services as order_services
from saga_orchestrator.domain import Saga, Step
from shared_domain.contracts import PAYLOADS, SENDERS, Envelope, MessageType
from shared_domain.messaging.consumer import KEPT_OF_TOO_LARGE
from shared_domain.runtime import Runtime, ServiceDefinition
from shared_domain.settings import ServiceSettings
from tests.integration.conftest import (
    INVENTORY,
    NOTIFICATION,
    ORCHESTRATOR,
    ORDER,
    PAYMENT,
    SHIPPING,
    InventorySettings,
    NotificationSettings,
    OrchestratorSettings,
    OrderSettings,
    PaymentSettings,
    ShippingSettings,
    add_saga,
    open_runtime,
    order_request,
)

pytestmark = pytest.mark.integration

# Tables a service writes on its own, whatever it is sent: replicas' heartbeats.
MOVING = {"failure_rate_replicas"}


@dataclass(frozen=True)
class Target:
    """A service, and one message its consumer takes (the valid one the hostile ones
    are made from)."""

    definition: ServiceDefinition[Any]
    settings: type[ServiceSettings]
    type: MessageType
    payload: dict[str, Any]

    @property
    def id(self) -> str:
        return self.definition.name


TARGETS = [
    Target(ORDER, OrderSettings, MessageType.ORDER_CANCELLED, {"reason": "test"}),
    Target(PAYMENT, PaymentSettings, MessageType.PAYMENT_REFUND, {"reason": "test"}),
    Target(INVENTORY, InventorySettings, MessageType.INVENTORY_RELEASE, {"reason": "test"}),
    Target(SHIPPING, ShippingSettings, MessageType.SHIPPING_CANCEL, {"reason": "test"}),
    Target(
        NOTIFICATION,
        NotificationSettings,
        MessageType.NOTIFICATION_SEND,
        {"kind": "order_confirmation", "customer_id": str(uuid.uuid4())},
    ),
    Target(ORCHESTRATOR, OrchestratorSettings, MessageType.PAYMENT_FAILED, {"reason": "test"}),
]


def valid(target: Target, **changes: Any) -> dict[str, Any]:
    envelope = Envelope(
        type=target.type.value,
        saga_id=uuid.uuid4(),
        order_id=uuid.uuid4(),
        correlation_id="hostile",
        source=SENDERS[target.type],
        payload=target.payload,
    )
    return envelope.model_dump(mode="json") | changes


@dataclass
class Running:
    rt: Runtime[Any]
    target: Target
    channel: AbstractChannel

    @property
    def handled(self) -> frozenset[MessageType]:
        return frozenset(self.rt.definition.build_handlers(self.rt))

    @property
    def queue(self) -> str:
        return self.rt.definition.queue.name

    async def publish(
        self,
        body: bytes,
        content_type: str | None = None,
        content_encoding: str | None = None,
    ) -> None:
        exchange = await self.channel.get_exchange(self.rt.definition.queue.exchange)
        await exchange.publish(
            aio_pika.Message(
                body,
                message_id=str(uuid.uuid4()),
                content_type=content_type,
                content_encoding=content_encoding,
            ),
            routing_key=self.target.type.value,
        )

    async def depth(self, queue: str) -> int:
        declared = await self.channel.declare_queue(queue, passive=True)
        count = declared.declaration_result.message_count
        assert count is not None
        return count

    async def dead_letters(self, count: int) -> list[AbstractIncomingMessage]:
        """Wait for `count` messages in the dead-letter queue and take them."""
        dlq = f"{self.queue}.dlq"
        for _ in range(200):
            if await self.depth(dlq) >= count:
                break
            await asyncio.sleep(0.05)
        queue = await self.channel.get_queue(dlq)
        taken = []
        while (message := await queue.get(no_ack=True, fail=False)) is not None:
            taken.append(message)
        assert len(taken) == count, f"{len(taken)} dead letters in {dlq}, not {count}"
        return taken

    async def tables(self) -> dict[str, str]:
        """A digest of every table the service owns."""
        digests = {}
        async with self.rt.pool.acquire() as conn:
            for table in self.rt.definition.metadata.sorted_tables:
                if table.name in MOVING:
                    continue
                digests[table.name] = await conn.fetchval(
                    f"SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), ''))"
                    f" FROM {table.name} t"
                )
        return digests

    async def outbox_drained(self) -> None:
        async with self.rt.pool.acquire() as conn:
            for _ in range(100):
                if await conn.fetchval("SELECT count(*) FROM outbox") == 0:
                    return
                await asyncio.sleep(0.05)
        raise AssertionError("the outbox kept its rows")

    async def consuming(self) -> None:
        """The consumer is still there, and nothing waits in its queue."""
        declared = await self.channel.declare_queue(self.queue, passive=True)
        assert declared.declaration_result.consumer_count == 1
        assert declared.declaration_result.message_count == 0


@pytest.fixture(scope="module", params=TARGETS, ids=lambda t: t.id)
async def running(
    request: pytest.FixtureRequest, vhost: str, db_prefix: str
) -> AsyncIterator[Running]:
    target: Target = request.param
    spec = target.definition.queue
    # what other tests left in the service's queues is theirs, not this test's
    declared = await open_runtime(target.definition, target.settings, vhost, db_prefix)
    await declared.stop()
    # A plain connection: a robust channel answers a passive declare from its cache, with
    # the counts of the first one.
    connection = await aio_pika.connect(f"amqp://guest:guest@127.0.0.1:5672/{vhost}")
    channel = await connection.channel()
    for name in (spec.name, spec.retry, spec.dlq):
        await (await channel.get_queue(name)).purge()
    rt = await open_runtime(target.definition, target.settings, vhost, db_prefix, consuming=True)
    try:
        yield Running(rt, target, channel)
    finally:
        await rt.stop()
        await connection.close()


def reason_of(message: AbstractIncomingMessage) -> tuple[str, str]:
    headers = message.headers or {}
    return str(headers["x-dead-letter-reason"]), str(headers["x-error"])


async def test_a_message_past_the_size_limit_is_dead_lettered_cut_short(
    running: Running,
) -> None:
    before = await running.tables()
    body = json.dumps(valid(running.target, correlation_id="x" * 10_000_000)).encode()
    await running.publish(body, "application/json")
    [letter] = await running.dead_letters(1)
    reason, error = reason_of(letter)
    assert reason == "too_large"
    assert f"{len(body)} bytes, more than MAX_MESSAGE_BYTES" in error
    assert (letter.headers or {})["x-original-size"] == len(body)
    assert letter.body == body[:KEPT_OF_TOO_LARGE]
    assert await running.tables() == before
    await running.consuming()


async def test_json_nested_past_the_parser_is_dead_lettered(running: Running) -> None:
    before = await running.tables()
    depth = 100_000
    body = json.dumps(valid(running.target)).encode()[:-1] + b', "deep": '
    body += b"[" * depth + b"]" * depth + b"}"
    await running.publish(body)
    [letter] = await running.dead_letters(1)
    reason, error = reason_of(letter)
    assert reason == "invalid_message"
    assert "recursion limit exceeded" in error
    assert await running.tables() == before
    await running.consuming()


@pytest.mark.parametrize(
    ("content_type", "content_encoding", "said"),
    [
        ("text/plain", None, "content type 'text/plain' is not application/json"),
        ("application/xml; charset=utf-8", None, "content type 'application/xml'"),
        ("application/json", "gzip", "content encoding 'gzip' is not read here"),
    ],
)
async def test_a_valid_envelope_in_another_content_type_is_dead_lettered(
    running: Running, content_type: str, content_encoding: str | None, said: str
) -> None:
    before = await running.tables()
    await running.publish(
        json.dumps(valid(running.target)).encode(), content_type, content_encoding
    )
    [letter] = await running.dead_letters(1)
    reason, error = reason_of(letter)
    assert reason == "invalid_message"
    assert said in error
    assert (letter.headers or {})["x-original-content-type"] == content_type
    assert await running.tables() == before
    await running.consuming()


async def test_a_message_from_the_wrong_sender_is_dead_lettered(running: Running) -> None:
    sender = SENDERS[running.target.type]
    impostor = "shipping_service" if sender != "shipping_service" else "payment_service"
    before = await running.tables()
    await running.publish(json.dumps(valid(running.target, source=impostor)).encode())
    [letter] = await running.dead_letters(1)
    reason, error = reason_of(letter)
    assert reason == "invalid_message"
    assert error == f"{running.target.type} comes from {sender}, not {impostor!r}"
    assert await running.tables() == before
    await running.consuming()


# ------------------------------------------------------------------ the saga's own checks

ORCHESTRATING = [t for t in TARGETS if t.definition is ORCHESTRATOR]
ORDERS = [t for t in TARGETS if t.definition is ORDER]


def reply(saga: Saga, **changes: Any) -> bytes:
    """payment.processed for `saga`, as the payment service answers its charge."""
    envelope = Envelope(
        type=MessageType.PAYMENT_PROCESSED.value,
        saga_id=saga.id,
        order_id=saga.order_id,
        correlation_id="hostile",
        causation_id=saga.steps[Step.PAYMENT].command_id,
        source="payment_service",
        payload={"payment_id": str(uuid.uuid4()), "amount": "1.00", "provider_reference": "r"},
    )
    return json.dumps(envelope.model_dump(mode="json") | changes).encode()


@pytest.mark.parametrize("running", ORCHESTRATING, ids=lambda t: t.id, indirect=True)
async def test_a_reply_naming_another_sagas_order_is_dead_lettered(running: Running) -> None:
    mine, other = await add_saga(running.rt), await add_saga(running.rt)
    before = await running.tables()
    await running.publish(reply(mine, order_id=str(other.order_id)))
    [letter] = await running.dead_letters(1)
    reason, error = reason_of(letter)
    assert reason == "rejected"
    assert error == (
        f"payment.processed names order {other.order_id}, but saga {mine.id} is for "
        f"order {mine.order_id}"
    )
    assert await running.tables() == before
    await running.consuming()


@pytest.mark.parametrize("running", ORCHESTRATING, ids=lambda t: t.id, indirect=True)
async def test_a_reply_to_a_command_never_sent_changes_no_saga(
    running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    saga = await add_saga(running.rt)
    never_sent = uuid.uuid4()
    before = await running.tables()
    body = reply(saga, causation_id=str(never_sent))
    await running.publish(body)
    message_id = json.loads(body)["message_id"]

    async def kept() -> bool:
        async with running.rt.pool.acquire() as conn:
            return bool(
                await conn.fetchval(
                    "SELECT count(*) FROM inbox WHERE message_id = $1", uuid.UUID(message_id)
                )
            )

    for _ in range(100):
        if await kept():
            break
        await asyncio.sleep(0.05)
    assert await kept(), "the reply was not consumed"
    after = await running.tables()
    # only the inbox moves: the reply is taken once, and nothing else is
    assert {t for t in before if before[t] != after[t]} == {"inbox"}
    assert await running.depth(f"{running.queue}.dlq") == 0
    assert (
        f"payment.processed for order {saga.order_id} ignored: it answers command {never_sent}, "
        f"the payment step's command in flight is {saga.steps[Step.PAYMENT].command_id}"
    ) in caplog.text
    await running.consuming()


@pytest.mark.parametrize("running", ORDERS, ids=lambda t: t.id, indirect=True)
async def test_an_order_event_naming_another_saga_is_dead_lettered(running: Running) -> None:
    order, _ = await order_services.place_order(running.rt, order_request(), None, "t")
    await running.outbox_drained()  # its order.created published and its row gone
    before = await running.tables()
    stranger = uuid.uuid4()
    envelope = valid(running.target, order_id=str(order.id), saga_id=str(stranger))
    await running.publish(json.dumps(envelope).encode())
    [letter] = await running.dead_letters(1)
    reason, error = reason_of(letter)
    assert reason == "rejected"
    assert error == (
        f"order.cancelled names saga {stranger}, but order {order.id} belongs to saga "
        f"{order.saga_id}"
    )
    assert await running.tables() == before
    await running.consuming()


WORKERS = [t for t in TARGETS if t.definition in (PAYMENT, INVENTORY, SHIPPING, NOTIFICATION)]


@pytest.mark.parametrize("running", WORKERS, ids=lambda t: t.id, indirect=True)
async def test_a_command_naming_another_saga_than_the_orders_is_dead_lettered(
    running: Running,
) -> None:
    """An order has one saga: once a worker holds a record of an order, a command for it
    from another saga (forged, or misrouted) changes nothing."""
    owner = valid(running.target)
    untouched = await running.tables()
    await running.publish(json.dumps(owner).encode())
    for _ in range(200):  # the owner's command recorded (a tombstone, or a notification)
        if await running.tables() != untouched:
            break
        await asyncio.sleep(0.05)
    await running.outbox_drained()
    before = await running.tables()
    assert before != untouched
    stranger = uuid.uuid4()
    await running.publish(json.dumps(owner | {"saga_id": str(stranger)}).encode())
    [letter] = await running.dead_letters(1)
    reason, error = reason_of(letter)
    assert reason == "rejected"
    assert error.startswith(
        f"{running.target.type} for order {owner['order_id']} names saga {stranger}, but the "
        f"order's "
    )
    assert error.endswith(f" was made by saga {owner['saga_id']}")
    assert await running.tables() == before
    # The owner's own command again is a duplicate: answered, not refused.
    await running.publish(json.dumps(owner | {"message_id": str(uuid.uuid4())}).encode())
    await asyncio.sleep(0.5)
    await running.outbox_drained()
    assert await running.depth(f"{running.queue}.dlq") == 0
    await running.consuming()


# ------------------------------------------------------------------ generated

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=12,
)
FIELDS = sorted(Envelope.model_fields)


@st.composite
def hostile(
    draw: st.DrawFn, target: Target, handled: frozenset[MessageType]
) -> tuple[bytes, str | None]:
    """A message body and its content type, made from the valid one by one of the ways
    a sender gets it wrong; never one the consumer could take."""
    envelope = valid(target)
    how = draw(st.sampled_from(["bytes", "json", "drop", "junk", "payload", "type", "source"]))
    if how == "bytes":
        body = draw(st.binary(max_size=300))
    elif how == "json":
        body = json.dumps(draw(JSON)).encode()
    else:
        if how == "drop":
            del envelope[draw(st.sampled_from(["type", "saga_id", "order_id", "source"]))]
        elif how == "junk":
            envelope[draw(st.sampled_from(FIELDS))] = draw(JSON)
        elif how == "payload":
            envelope["payload"] = draw(st.dictionaries(st.text(max_size=10), JSON, min_size=1))
        elif how == "type":
            envelope["type"] = draw(st.sampled_from([t.value for t in MessageType]) | st.text())
        else:
            envelope["source"] = draw(st.text(max_size=30))
        body = json.dumps(envelope).encode()
    content_type = draw(st.sampled_from([None, "application/json", "text/plain"]))
    assume(not acceptable(handled, body, content_type))
    return body, content_type


def acceptable(handled: frozenset[MessageType], body: bytes, content_type: str | None) -> bool:
    """Whether the consumer would hand the message to its handler."""
    if content_type not in (None, "application/json"):
        return False
    try:
        envelope = Envelope.model_validate_json(body)
        type_ = MessageType(envelope.type)
        PAYLOADS[type_].model_validate(envelope.payload)
    except ValueError:
        return False
    return type_ in handled and envelope.source == SENDERS[type_]


@settings(
    max_examples=25,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much],
)
@given(data=st.data())
async def test_generated_envelopes_are_dead_lettered_and_the_consumer_goes_on(
    running: Running, data: st.DataObject
) -> None:
    made = hostile(running.target, running.handled)
    messages = data.draw(st.lists(made, min_size=1, max_size=4))
    before = await running.tables()
    for body, content_type in messages:
        await running.publish(body, content_type)
    letters = await running.dead_letters(len(messages))
    assert sorted(m.body for m in letters) == sorted(body for body, _ in messages)
    assert {reason_of(m)[0] for m in letters} == {"invalid_message"}
    assert await running.tables() == before
    await running.consuming()
