"""The chaos harness: a steady load of orders through the public API, the faults, and
the invariant checks, with a record of each scenario for the summary."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import asyncpg
import httpx
from aio_pika.abc import AbstractIncomingMessage

from scripts.invariants import TERMINAL, audit_orders, customer_orders, stock_problems
from scripts.isolation import PG
from scripts.sample import ADDRESS
from scripts.stack import SERVICES, Stack
from shared_domain.choreography import CHOREOGRAPHY
from shared_domain.contracts import EVENTS_EXCHANGE
from tests.support import (
    HUB,
    INITIAL_STOCK,
    KEYBOARD,
    MONITOR,
    MOUSE,
    PRICES,
)

LONG = os.environ.get("CHAOS_LONG") == "1"
REPLICAS = 3 if LONG else 2
LOAD_SECONDS = 25.0 if LONG else 3.0
OUTAGE_SECONDS = 8.0 if LONG else 3.0
RESTART_AFTER = 4.0 if LONG else 2.0
RECOVERY_BOUND = 120.0  # every order terminal this long after the fault ends, at most
# The memory alarm outlasts the clients' timeout, and every order is answered well
# within it (OUTBOX_PUBLISH_WAIT is 1 s, and a blocked broker is not waited on at all).
ALARM_SECONDS = 30.0 if LONG else 6.0
ALARM_CLIENT_TIMEOUT = 20.0 if LONG else 4.0
ANSWER_BOUND = 3.0
BROKER_RESTART = os.environ.get("CHAOS_BROKER_RESTART") == "1"

LOAD_PRODUCTS = [MOUSE, HUB, KEYBOARD, MONITOR]  # the laptop is kept for the contention test
LOAD_CLIENTS = 3 if LONG else 2
ADMIN_KEY = "chaos-admin-key-5b7e0c2d"  # the harness stocks the warehouse through the API
LOAD_PAUSE = 0.1  # seconds between two orders of one client
FAULT_BOUND = 60.0  # seconds the longest fault takes, restarts included
# Each scenario restocks every load product with as much as its load could ever buy of
# it, so that sagas go through every step during the fault: sold out, they would all
# stop at the reservation (as 400 units per scenario did on a fast machine).
RESTOCK = int(LOAD_CLIENTS * (LOAD_SECONDS + FAULT_BOUND) / LOAD_PAUSE)


# Choreography: how long the observer may take to catch up with the orders' outcomes
# (an event ahead of what it saw waits in the retry queue for the one before it).
OBSERVER_LAG = 30.0


@dataclass
class Result:
    style: str
    scenario: str
    placed: int
    terminal: int
    outcomes: Counter[str]
    recover_seconds: float
    duplicated: int = 0
    notes: str = ""

    @property
    def lost(self) -> int:
        return self.placed - self.terminal


RESULTS: list[Result] = []


@dataclass(frozen=True)
class Tapped:
    routing_key: str
    message_id: str
    body: bytes
    headers: dict[str, Any]


class EventTap:
    """A copy of every event the stack publishes, from a queue of its own bound to the
    events exchange (choreography's duplicates are its events delivered again)."""

    def __init__(self, vhost: str) -> None:
        self._url = f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
        self.seen: list[Tapped] = []

    async def __aenter__(self) -> EventTap:
        self._connection = await aio_pika.connect_robust(self._url)
        channel = await self._connection.channel()
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(EVENTS_EXCHANGE, routing_key="#")

        async def keep(message: AbstractIncomingMessage) -> None:
            self.seen.append(
                Tapped(
                    message.routing_key or "",
                    message.message_id or "",
                    message.body,
                    dict(message.headers),
                )
            )

        await queue.consume(keep, no_ack=True)
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._connection.close()


@dataclass
class Chaos:
    """The stack under test, as a client sees it, plus the levers to break it."""

    stack: Stack
    client: httpx.AsyncClient
    vhost: str
    mode: str  # its SAGA_MODE
    tap: EventTap
    customers: list[str] = field(default_factory=list)  # one per scenario
    restocked: Counter[str] = field(default_factory=Counter)
    # Every POST /orders: when it was sent (monotonic), how long its answer took, and
    # its status (0: no answer, the client gave up or the connection failed).
    posts: list[tuple[float, float, int]] = field(default_factory=list)
    post_timeout: float | None = None  # the client's own timeout when None

    async def restock(self, units: int) -> None:
        """Goods arrive at the warehouse, so that every scenario has stock to sell and
        exercises the whole saga, not only the shortage path."""
        for product in LOAD_PRODUCTS:
            await self.add_stock(product, units)
            self.restocked[product] += units

    async def add_stock(self, product: str, units: int) -> None:
        """Through the inventory's stock endpoint, on any live replica. Only a request
        that never reached one is tried again: a change is not idempotent, and one that
        may have been applied must not be applied twice."""
        for _ in range(100):
            for name in self.stack.instances("inventory_service"):
                if not self.stack.running(name):
                    continue
                try:
                    response = await self.client.post(
                        f"{self.stack.url(name)}/api/v1/products/{product}/stock",
                        json={"quantity": units},
                        headers={"X-Admin-Key": ADMIN_KEY, "X-Admin-Actor": "chaos"},
                    )
                except httpx.ConnectError:
                    continue
                assert response.status_code == 200, response.text
                return
            await asyncio.sleep(0.2)
        raise AssertionError(f"no inventory replica took the stock for {product}")

    def url(self, service: str, path: str) -> str:
        return f"{self.stack.url(service)}/api/v1{path}"

    async def data(self, service: str, path: str) -> Any:
        """GET from any live replica of the service; None on a 404."""
        last: Exception | None = None
        for _ in range(100):
            for name in self.stack.instances(service):
                if not self.stack.running(name):
                    continue
                try:
                    response = await self.client.get(f"{self.stack.url(name)}/api/v1{path}")
                except httpx.TransportError as exc:
                    last = exc
                    continue
                if response.status_code == 404:
                    return None
                if response.status_code == 200:
                    return response.json()["data"]
                last = AssertionError(f"GET {path}: {response.status_code} {response.text}")
            await asyncio.sleep(0.2)
        raise AssertionError(f"GET {service} {path} kept failing: {last}")

    async def place(self, items: list[dict[str, Any]], customer: str, give_up: float) -> Any:
        """POST an order, retrying with the same idempotency key (and across replicas)
        until it is accepted: a client that got no answer never knows if it was stored."""
        key = str(uuid.uuid4())
        body = {"customer_id": customer, "items": items, "shipping_address": ADDRESS}
        deadline = time.monotonic() + give_up
        while True:
            for name in self.stack.instances("order_service"):
                sent = time.monotonic()
                try:
                    response = await self.client.post(
                        f"{self.stack.url(name)}/api/v1/orders",
                        json=body,
                        headers={"Idempotency-Key": key},
                        timeout=self.post_timeout or httpx.USE_CLIENT_DEFAULT,
                    )
                except httpx.TransportError:
                    self.posts.append((sent, time.monotonic() - sent, 0))
                    continue
                self.posts.append((sent, time.monotonic() - sent, response.status_code))
                if response.status_code == 201:
                    return response.json()["data"]
                assert response.status_code in (502, 503), response.text
            if time.monotonic() > deadline:
                raise AssertionError(f"order {key} not accepted within {give_up}s")
            await asyncio.sleep(0.2)

    def new_customer(self) -> str:
        customer = str(uuid.uuid4())
        self.customers.append(customer)
        return customer

    async def orders_of(self, customer: str) -> list[dict[str, Any]]:
        return await customer_orders(self.data, customer)

    async def wait_terminal(self, customer: str, accepted: int, bound: float) -> list[Any]:
        """The customer's orders once every one is terminal. There must be exactly as
        many as were accepted: none lost, none stored twice."""
        deadline = time.monotonic() + bound
        while True:
            orders = await self.orders_of(customer)
            pending = [o for o in orders if o["status"] not in TERMINAL]
            if not pending:
                assert len(orders) == accepted, f"{accepted} accepted, {len(orders)} stored"
                return orders
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(pending)} order(s) not terminal after {bound}s")
            await asyncio.sleep(0.25)


@contextlib.asynccontextmanager
async def steady_load(
    chaos: Chaos, customer: str, concurrency: int = LOAD_CLIENTS
) -> AsyncIterator[list[Any]]:
    """Orders flow while the body runs; yields the list of accepted orders."""
    accepted: list[Any] = []
    stop = asyncio.Event()
    rng = random.Random()

    async def worker() -> None:
        while not stop.is_set():
            product = rng.choice(LOAD_PRODUCTS)
            line = {"product_id": product, "quantity": 1, "price": PRICES[product]}
            accepted.append(await chaos.place([line], customer, give_up=RECOVERY_BOUND))
            await asyncio.sleep(LOAD_PAUSE)

    tasks = [asyncio.create_task(worker()) for _ in range(concurrency)]
    try:
        yield accepted
    finally:
        stop.set()
        await asyncio.gather(*tasks)


async def run_scenario(chaos: Chaos, name: str, fault: Any, notes: str = "") -> Result:
    """Load for a while, the fault in the middle, then wait for every order to finish
    and check the invariants over everything placed so far."""
    customer = chaos.new_customer()
    await chaos.restock(RESTOCK)
    async with steady_load(chaos, customer) as accepted:
        await asyncio.sleep(LOAD_SECONDS / 2)
        await fault()
        fault_over = time.monotonic()
        await asyncio.sleep(LOAD_SECONDS / 2)
    final = await chaos.wait_terminal(customer, len(accepted), RECOVERY_BOUND)
    recover = time.monotonic() - fault_over
    duplicated = await check_invariants(chaos, final)
    sold_out = [o["id"] for o in final if (o["failure_reason"] or "").startswith("inventory")]
    assert not sold_out, (
        f"{len(sold_out)} order(s) found their product sold out, so they stopped at the "
        "reservation; RESTOCK is too small for this load"
    )
    result = Result(
        chaos.mode,
        name,
        len(accepted),
        len(final),
        Counter(o["status"] for o in final),
        recover,
        duplicated,
        notes,
    )
    RESULTS.append(result)
    return result


async def check_invariants(chaos: Chaos, orders: list[dict[str, Any]]) -> int:
    """The invariants of scripts/invariants.py over these orders, and stock over every
    order of the stack. Returns the number of sagas that did a step twice (for the
    summary; the scenarios assert it is 0). In choreography the observer's sagas may
    lag behind the orders for a moment: they are read again until they agree."""
    deadline = time.monotonic() + (OBSERVER_LAG if chaos.mode == CHOREOGRAPHY else 0)
    audit = await audit_orders(chaos.data, orders)
    while audit.problems and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        audit = await audit_orders(chaos.data, orders)
    assert not audit.problems, "\n".join(audit.problems[:20])
    await check_stock(chaos)
    for line in audit.doubled:
        print(f"advanced twice: {line}")
    return len(audit.doubled)


async def check_stock(chaos: Chaos) -> None:
    finals = [o for c in chaos.customers for o in await chaos.orders_of(c)]
    products = await chaos.data("inventory_service", "/products")
    supplied = {p["id"]: INITIAL_STOCK[p["id"]] + chaos.restocked[p["id"]] for p in products}
    problems = stock_problems(products, finals, supplied)
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------- faults


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=120)


@contextlib.asynccontextmanager
async def broker_outage(vhost: str) -> AsyncIterator[None]:
    """RabbitMQ unavailable to the stack while the block runs: every connection of its
    vhost is closed and no new one is let in (other vhosts are untouched). With
    CHAOS_BROKER_RESTART=1 the whole broker is stopped and started instead."""
    if BROKER_RESTART:
        await asyncio.to_thread(rabbitmqctl, "stop_app")
        try:
            yield
        finally:
            await asyncio.to_thread(rabbitmqctl, "start_app")
            await asyncio.to_thread(rabbitmqctl, "await_startup")
        return
    limits = json.dumps({"max-connections": 0})
    await asyncio.to_thread(rabbitmqctl, "set_vhost_limits", "-p", vhost, limits)
    try:
        await asyncio.to_thread(rabbitmqctl, "close_all_connections", "--vhost", vhost, "chaos")
        yield
    finally:
        await asyncio.to_thread(rabbitmqctl, "clear_vhost_limits", "-p", vhost)


def memory_watermark() -> str:
    """RabbitMQ's memory high watermark as `set_vm_memory_high_watermark` takes it back:
    a fraction (`0.4`) or `absolute <bytes>`."""
    out = subprocess.run(
        ["rabbitmqctl", "-q", "eval", "vm_memory_monitor:get_vm_memory_high_watermark()."],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout.strip()
    if out.startswith("{absolute,"):
        return f"absolute {out.removeprefix('{absolute,').rstrip('}')}"
    return out


@contextlib.asynccontextmanager
async def memory_alarm() -> AsyncIterator[None]:
    """RabbitMQ's memory alarm raised while the block runs: a watermark of 10 MB, far
    below what the broker uses, so it blocks every publishing connection at once, as a
    disk alarm does in production. It is broker-wide, every vhost alike."""
    before = await asyncio.to_thread(memory_watermark)
    await asyncio.to_thread(rabbitmqctl, "set_vm_memory_high_watermark", "absolute", "10MB")
    try:
        yield
    finally:
        await asyncio.to_thread(rabbitmqctl, "set_vm_memory_high_watermark", *before.split())


@contextlib.asynccontextmanager
async def database_outage(databases: list[str]) -> AsyncIterator[None]:
    """PostgreSQL unavailable to the stack: its databases refuse new connections and every
    open one is terminated; other databases are untouched."""
    conn = await asyncpg.connect(database="postgres", **PG)
    try:
        for db in databases:
            await conn.execute(f'ALTER DATABASE "{db}" ALLOW_CONNECTIONS false')
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = ANY($1)",
            databases,
        )
        yield
    finally:
        for db in databases:
            await conn.execute(f'ALTER DATABASE "{db}" ALLOW_CONNECTIONS true')
        await conn.close()


def databases(stack: Stack) -> list[str]:
    return [stack.database(s) for s in SERVICES]
