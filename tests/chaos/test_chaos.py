"""Chaos scenarios: each runs a steady load of orders (the seed's failure rates), breaks
something in the middle of it, and then checks that every order finished and every
invariant holds, in each saga style. `make test` runs a short version of each; `make
chaos` the long one."""

from __future__ import annotations

import asyncio
import json
import random
import re
import time
import uuid
from collections import Counter
from typing import Any

import aio_pika
import httpx
import pytest

from scripts.stack import SERVICES
from shared_domain.choreography import CHOREOGRAPHY, ORCHESTRATION, bindings
from shared_domain.contracts import COMMANDS_EXCHANGE, EVENTS_EXCHANGE, Envelope
from shared_domain.messaging.topology import ALL_QUEUES
from tests.chaos.harness import (
    ALARM_CLIENT_TIMEOUT,
    ALARM_SECONDS,
    ANSWER_BOUND,
    LONG,
    OUTAGE_SECONDS,
    RECOVERY_BOUND,
    REPLICAS,
    RESTART_AFTER,
    RESULTS,
    Chaos,
    Result,
    broker_outage,
    check_invariants,
    database_outage,
    databases,
    memory_alarm,
    run_scenario,
)
from tests.support import LAPTOP, POISON_KEYS, PRICES

pytestmark = [pytest.mark.chaos, pytest.mark.e2e]


def assert_clean(result: Result) -> None:
    assert result.placed > 0
    assert result.lost == 0
    assert result.duplicated == 0
    assert result.recover_seconds < RECOVERY_BOUND


async def readiness(chaos: Chaos, service: str) -> int:
    try:
        response = await chaos.client.get(chaos.url(service, "/health/ready"))
    except httpx.RemoteProtocolError:
        # a kept-alive connection the server closed (its keep-alive timeout) just as the
        # client reused it: asked again on a new one
        response = await chaos.client.get(chaos.url(service, "/health/ready"))
    return response.status_code


async def readiness_through_outage(chaos: Chaos, service: str) -> int:
    """Holds an outage for OUTAGE_SECONDS while polling `service`'s readiness: 503 if
    it said so at any point, else its last answer. (Noticing takes a moment: a dropped
    connection is seen on its next heartbeat or use.)"""
    deadline = time.monotonic() + OUTAGE_SECONDS
    status = await readiness(chaos, service)
    while status != 503 and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        status = await readiness(chaos, service)
    await asyncio.sleep(max(0.0, deadline - time.monotonic()))
    return status


async def test_contention_200_orders_for_50_units_reserve_exactly_50(chaos: Chaos) -> None:
    """Every replica of inventory races for the same rows; exactly the stock there is
    gets reserved. (Runs first, while the laptop's 50 units are untouched.)"""
    products = {p["id"]: p for p in await chaos.data("inventory_service", "/products")}
    assert products[LAPTOP]["stock"] == 50
    customer = chaos.new_customer()
    line = {"product_id": LAPTOP, "quantity": 1, "price": PRICES[LAPTOP]}
    started = time.monotonic()
    orders = await asyncio.gather(
        *(chaos.place([line], customer, give_up=RECOVERY_BOUND) for _ in range(200))
    )
    final = await chaos.wait_terminal(customer, len(orders), RECOVERY_BOUND)
    outcomes = Counter(o["status"] for o in final)
    duplicated = await check_invariants(chaos, final)

    laptop = next(
        p for p in await chaos.data("inventory_service", "/products") if p["id"] == LAPTOP
    )
    reserved = sum(1 for o in final if o["status"] == "completed")
    stock_failures = sum(
        1 for o in final if (o["failure_reason"] or "").startswith("inventory failed")
    )
    RESULTS.append(
        Result(
            chaos.mode,
            "stock contention (200 for 50)",
            len(orders),
            len(final),
            outcomes,
            time.monotonic() - started,
            duplicated,
            f"{laptop['reserved']} reserved, {laptop['stock']} left",
        )
    )
    assert duplicated == 0
    assert laptop["stock"] >= 0
    assert laptop["reserved"] == reserved <= 50
    # every order that reached inventory either got a unit or found none left
    assert laptop["stock"] == 0 or stock_failures == 0
    assert laptop["stock"] + laptop["reserved"] == 50


# The short run kills the service that ends the sagas (the orchestrator; in
# choreography the order service, which keeps their deadlines) and a worker that calls
# out; the long run (make chaos) every service.
SHORT_KILLS = {
    ORCHESTRATION: ("saga_orchestrator", "payment_service"),
    CHOREOGRAPHY: ("order_service", "payment_service"),
}
KILLED = SERVICES if LONG else tuple(dict.fromkeys(s for k in SHORT_KILLS.values() for s in k))


@pytest.mark.parametrize("service", KILLED)
async def test_kill_9_every_replica_of_a_service_then_restart(chaos: Chaos, service: str) -> None:
    if not LONG and service not in SHORT_KILLS[chaos.mode]:
        pytest.skip(f"the short run kills {' and '.join(SHORT_KILLS[chaos.mode])} in {chaos.mode}")

    async def fault() -> None:
        chaos.stack.kill(service)  # all replicas: the service is gone
        await asyncio.sleep(RESTART_AFTER)
        await chaos.stack.start([service], timeout=120)

    assert_clean(await run_scenario(chaos, f"kill -9 {service}", fault))


@pytest.mark.skipif(not LONG, reason="make chaos only: the short run kills whole services")
async def test_kill_single_replicas_of_every_service_under_load(chaos: Chaos) -> None:
    rng = random.Random()

    async def fault() -> None:
        victims = [rng.choice(chaos.stack.instances(s)) for s in SERVICES]
        for victim in victims:
            chaos.stack.kill(victim)
            await asyncio.sleep(0.3)
        await chaos.stack.start(victims, timeout=120)

    result = await run_scenario(chaos, f"kill one of {REPLICAS} replicas, each service", fault)
    assert_clean(result)


async def test_broker_outage(chaos: Chaos) -> None:
    seen: dict[str, int] = {}

    async def fault() -> None:
        async with broker_outage(chaos.vhost):
            seen["during"] = await readiness_through_outage(chaos, "payment_service")

    result = await run_scenario(chaos, "RabbitMQ unavailable", fault)
    assert_clean(result)
    assert seen["during"] == 503, "readiness says unready while the broker is away"
    for service in SERVICES:
        assert await readiness(chaos, service) == 200, f"{service} reconnected by itself"


async def test_database_outage(chaos: Chaos) -> None:
    seen: dict[str, int] = {}

    async def fault() -> None:
        async with database_outage(databases(chaos.stack)):
            seen["during"] = await readiness_through_outage(chaos, "inventory_service")

    result = await run_scenario(chaos, "PostgreSQL unavailable", fault)
    assert_clean(result)
    assert seen["during"] == 503
    for service in SERVICES:
        assert await readiness(chaos, service) == 200, f"{service} reconnected by itself"


async def blocked_metric(chaos: Chaos, service: str) -> float:
    response = await chaos.client.get(f"{chaos.stack.url(service)}/metrics")
    for line in response.text.splitlines():
        if line.startswith("rabbitmq_connection_blocked "):
            return float(line.split()[1])
    raise AssertionError(f"{service} has no rabbitmq_connection_blocked")


async def block_seen(chaos: Chaos, service: str) -> dict[str, Any]:
    """Polls `service` while the alarm is raised until its readiness says RabbitMQ is
    blocked; then what readiness answered and what /metrics said."""
    deadline = time.monotonic() + ALARM_SECONDS
    while True:
        response = await chaos.client.get(chaos.url(service, "/health/ready"))
        state = response.json()["data"]["dependencies"]["rabbitmq"]
        if state == "blocked" or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    return {"ready": (response.status_code, state), "metric": await blocked_metric(chaos, service)}


async def test_memory_alarm_under_load(chaos: Chaos) -> None:
    """RabbitMQ's memory alarm, raised for longer than the clients' timeout while orders
    flow: every order is answered 201 within ANSWER_BOUND, readiness and /metrics show
    the block, and once it clears every saga finishes, none lost or done twice."""
    seen: dict[str, Any] = {}
    window: list[float] = []

    async def fault() -> None:
        chaos.post_timeout = ALARM_CLIENT_TIMEOUT
        try:
            async with memory_alarm():
                window.append(time.monotonic())
                seen.update(await block_seen(chaos, "order_service"))
                await asyncio.sleep(max(0.0, window[0] + ALARM_SECONDS - time.monotonic()))
            window.append(time.monotonic())
        finally:
            chaos.post_timeout = None

    result = await run_scenario(chaos, "RabbitMQ memory alarm", fault)
    start, end = window
    during = [(seconds, status) for sent, seconds, status in chaos.posts if start <= sent <= end]
    slowest = max(seconds for seconds, _ in during)
    result.notes = f"{len(during)} POSTs in a {end - start:.0f}s alarm, slowest {slowest:.2f}s"
    assert_clean(result)
    assert Counter(status for _, status in during) == {201: len(during)}, "every POST answered"
    assert slowest < ANSWER_BOUND < ALARM_CLIENT_TIMEOUT < ALARM_SECONDS
    assert seen["ready"] == (200, "blocked"), "readiness shows the block and stays ready"
    assert seen["metric"] == 1.0
    for service in SERVICES:
        assert await readiness(chaos, service) == 200
        assert await blocked_metric(chaos, service) == 0.0, f"{service} unblocked by itself"


def _payload(step: str, command: str, saga: dict[str, Any]) -> dict[str, Any]:
    order = saga["order"]
    if command.endswith((".refund", ".release", ".cancel")):
        return {"reason": saga["failure_reason"] or "saga compensation"}
    if step == "payment":
        return {"customer_id": order["customer_id"], "amount": order["total_amount"]}
    if step == "inventory":
        return {"items": order["items"]}
    if step == "shipping":
        return {"items": order["items"], "shipping_address": order["shipping_address"]}
    kind = "order_confirmation" if saga["status"] == "completed" else "order_cancelled"
    reason = None if kind == "order_confirmation" else saga["failure_reason"]
    return {"kind": kind, "customer_id": order["customer_id"], "reason": reason}


COMMANDS = {
    ("payment", False): "payment.process",
    ("payment", True): "payment.refund",
    ("inventory", False): "inventory.reserve",
    ("inventory", True): "inventory.release",
    ("shipping", False): "shipping.create",
    ("shipping", True): "shipping.cancel",
    ("notification", False): "notification.send",
}


async def test_duplicate_and_out_of_order_delivery(chaos: Chaos) -> None:
    """Every message of finished sagas that a service acts on is delivered again, twice,
    last first: in orchestration each command, with its own message id (each service
    answers again, so the orchestrator also gets every reply again, late and out of
    order); in choreography each event, as it was published. Nothing may happen twice."""
    connection = await aio_pika.connect(f"amqp://guest:guest@127.0.0.1:5672/{chaos.vhost}")
    sent = 0

    async def fault() -> None:
        nonlocal sent
        earlier = [o for c in chaos.customers[:-1] for o in await chaos.orders_of(c)]
        finished = earlier[-60:] if LONG else earlier[-30:]
        channel = await connection.channel(publisher_confirms=True)
        again = (
            await events_again(chaos, channel, finished)
            if chaos.mode == CHOREOGRAPHY
            else await commands_again(chaos, channel, finished)
        )
        for exchange, key, message in again:
            for _ in range(2):
                await exchange.publish(message, routing_key=key)
                sent += 1

    try:
        result = await run_scenario(chaos, "duplicate + out-of-order delivery", fault)
    finally:
        await connection.close()
    result.notes = f"{sent} duplicate {'events' if chaos.mode == CHOREOGRAPHY else 'commands'}"
    assert sent > 0
    assert_clean(result)


Again = list[tuple[aio_pika.abc.AbstractExchange, str, aio_pika.Message]]


async def commands_again(
    chaos: Chaos, channel: aio_pika.abc.AbstractChannel, finished: list[dict[str, Any]]
) -> Again:
    """Orchestration: the command of each step the saga took, last step first."""
    exchange = await channel.get_exchange(COMMANDS_EXCHANGE)
    again: Again = []
    for order in finished:
        saga = await chaos.data("saga_orchestrator", f"/sagas/{order['saga_id']}")
        if saga is None or saga["status"] not in ("completed", "cancelled"):
            continue
        for step in reversed(list(saga["steps"])):
            state = saga["steps"][step]
            if not state.get("command_id") or state["status"] == "pending":
                continue
            compensated = state["status"] in ("compensated", "compensation_failed")
            command = COMMANDS[(step, compensated)]
            envelope = Envelope(
                message_id=uuid.UUID(state["command_id"]),
                type=command,
                saga_id=saga["id"],
                order_id=saga["order_id"],
                correlation_id="chaos-duplicate",
                source="saga_orchestrator",
                attempt=9,
                payload=_payload(step, command, saga),
            )
            message = aio_pika.Message(
                envelope.model_dump_json().encode(),
                message_id=str(envelope.message_id),
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            )
            again.append((exchange, command, message))
    return again


async def events_again(
    chaos: Chaos, channel: aio_pika.abc.AbstractChannel, finished: list[dict[str, Any]]
) -> Again:
    """Choreography: every event the finished sagas published, exactly as it was (same
    message id and body), last one first."""
    exchange = await channel.get_exchange(EVENTS_EXCHANGE)
    sagas = {o["saga_id"] for o in finished if o["status"] in ("completed", "cancelled")}
    again: Again = []
    for tapped in reversed(chaos.tap.seen):
        try:
            saga_id = json.loads(tapped.body).get("saga_id")
        except ValueError:  # a poison message of an earlier run of the scenarios
            continue
        if saga_id not in sagas:
            continue
        message = aio_pika.Message(
            tapped.body,
            message_id=tapped.message_id,
            headers=tapped.headers,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        again.append((exchange, tapped.routing_key, message))
    return again


def _topic_match(pattern: str, key: str) -> bool:
    """RabbitMQ's topic matching: `*` is one word, `#` any number of them."""
    regex = re.escape(pattern).replace(r"\*", r"[^.]+").replace(r"\#", r".*")
    return re.fullmatch(regex, key) is not None


def consumed_keys(mode: str) -> list[tuple[str, str]]:
    """(exchange, routing key) of every message type a service consumes in `mode`: the
    commands in orchestration, with the events the orchestrator and the order service
    hear; in choreography the events each service reacts to, and the undo commands."""
    wanted, _ = bindings(mode)
    return sorted(
        {(ex, key) for bound in wanted.values() for ex, key in bound if not {"*", "#"} & set(key)}
    )


async def test_poison_message_on_every_consumed_key(chaos: Chaos) -> None:
    connection = await aio_pika.connect(f"amqp://guest:guest@127.0.0.1:5672/{chaos.vhost}")
    ids: dict[tuple[str, str], str] = {}
    targets = consumed_keys(chaos.mode)

    async def dlq_counts() -> dict[str, int]:
        return {q["queue"]: q["messages"] for q in await chaos.data("saga_orchestrator", "/dlq")}

    before = await dlq_counts()

    async def fault() -> None:
        channel = await connection.channel(publisher_confirms=True)
        for exchange_name, key in targets:
            exchange = await channel.get_exchange(exchange_name)
            ids[(exchange_name, key)] = str(uuid.uuid4())
            await exchange.publish(
                aio_pika.Message(b"\x00not json at all", message_id=ids[(exchange_name, key)]),
                routing_key=key,
            )

    try:
        result = await run_scenario(chaos, "poison message per consumed key", fault)
    finally:
        await connection.close()
    assert_clean(result)
    if chaos.mode == ORCHESTRATION:  # every command, as the operations test sends them
        assert set(POISON_KEYS) <= {key for ex, key in targets if ex == COMMANDS_EXCHANGE}
    after = await dlq_counts()
    wanted, _ = bindings(chaos.mode)
    for spec in ALL_QUEUES:
        routed = [
            target
            for target in targets
            if any(ex == target[0] and _topic_match(p, target[1]) for ex, p in wanted[spec.name])
        ]
        assert after[spec.dlq] - before[spec.dlq] == len(routed), spec.dlq
        if not routed:
            continue
        peek = await chaos.data("saga_orchestrator", f"/dlq/{spec.dlq}/messages?limit=500")
        mine = [m for m in peek["items"] if m["key"] in {ids[t] for t in routed}]
        assert {m["original_routing_key"] for m in mine} == {key for _, key in routed}
        assert all(m["reason"] == "invalid_message" for m in mine)
