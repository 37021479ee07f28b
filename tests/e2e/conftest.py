"""All six services started as real servers on free ports, an isolated vhost and their
own databases; the tests talk to them over HTTP only."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import pytest
from playwright.async_api import Browser, async_playwright

from scripts.invariants import TERMINAL
from scripts.isolation import create_vhost, delete_vhost, free_port
from scripts.sample import ADDRESS
from scripts.stack import SERVICES, Stack
from tests.e2e.browser import CHROMIUM, FLAGS
from tests.support import (  # noqa: F401 - the catalogue is re-exported for the e2e tests
    HUB,
    INITIAL_STOCK,
    KEYBOARD,
    LAPTOP,
    MONITOR,
    MOUSE,
    PRICES,
    test_env,
)

pytestmark = pytest.mark.e2e

ADMIN_KEY = "e2e-admin-key-0123456789"
RATE_ENV = {
    "payment_service": "PAYMENT_FAILURE_RATE",
    "shipping_service": "SHIPPING_FAILURE_RATE",
    "notification_service": "NOTIFICATION_FAILURE_RATE",
}


def line(product: str, quantity: int = 1) -> dict[str, Any]:
    return {"product_id": product, "quantity": quantity, "price": PRICES[product]}


@dataclass
class Api:
    """The system as a client sees it."""

    stack: Stack
    client: httpx.AsyncClient
    placed: list[dict[str, Any]] = field(default_factory=list)
    env: dict[str, dict[str, str]] = field(default_factory=dict)
    vhost: str = "/"
    admin_key: str = ADMIN_KEY
    rates: dict[str, float] = field(default_factory=dict)  # as this client last set them
    mode: str = "orchestration"  # its SAGA_MODE

    def url(self, service: str, path: str) -> str:
        return f"{self.stack.url(service)}/api/v1{path}"

    async def get(self, service: str, path: str, **params: Any) -> httpx.Response:
        return await self.client.get(self.url(service, path), params=params or None)

    async def place(
        self,
        items: list[dict[str, Any]],
        customer_id: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        response = await self.client.post(
            self.url("order_service", "/orders"),
            headers=headers,
            json={
                "customer_id": customer_id or str(uuid.uuid4()),
                "items": items,
                "shipping_address": ADDRESS,
            },
        )
        assert response.status_code == 201, response.text
        order = response.json()["data"]
        if all(o["id"] != order["id"] for o in self.placed):
            self.placed.append(order)
        return order

    async def order(self, order_id: str) -> dict[str, Any]:
        response = await self.get("order_service", f"/orders/{order_id}")
        assert response.status_code == 200, response.text
        return response.json()["data"]

    async def wait_terminal(self, order_id: str, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            order = await self.order(order_id)
            if order["status"] in TERMINAL:
                return order
            if time.monotonic() > deadline:
                raise AssertionError(f"order {order_id} still {order['status']} after {timeout}s")
            await asyncio.sleep(0.05)

    async def data(self, service: str, path: str) -> Any:
        """The `data` of a GET that must succeed, or None on a 404."""
        response = await self.get(service, path)
        if response.status_code == 404:
            return None
        assert response.status_code == 200, response.text
        return response.json()["data"]

    async def stock(self) -> dict[str, tuple[int, int]]:
        products = await self.data("inventory_service", "/products")
        return {p["id"]: (p["stock"], p["reserved"]) for p in products}

    async def in_stock(self, quantity: int, exclude: tuple[str, ...] = ()) -> str:
        """A product with at least `quantity` units available (earlier tests consume stock)."""
        stock = await self.stock()
        best = max((p for p in stock if p not in exclude), key=lambda p: stock[p][0])
        assert stock[best][0] >= quantity, f"no product has {quantity} units left: {stock}"
        return best

    @property
    def admin(self) -> dict[str, str]:
        return {"X-Admin-Key": self.admin_key}

    async def set_rate(self, service: str, name: str, rate: float | None) -> dict[str, Any]:
        """Set a worker's failure rate at run time (None: back to its environment's)."""
        url = self.url(service, f"/admin/failure-rates/{name}")
        if rate is None:
            response = await self.client.delete(url, headers=self.admin)
        else:
            response = await self.client.put(url, json={"rate": rate}, headers=self.admin)
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()["data"]
        return data

    async def failure_rates(
        self, payment: float = 0.0, shipping: float = 0.0, notification: float = 0.0
    ) -> None:
        """Set the workers' failure rates at run time (only those that change)."""
        wanted = {
            ("payment_service", "payment"): payment,
            ("shipping_service", "shipping"): shipping,
            ("notification_service", "notification"): notification,
        }
        for (service, name), rate in wanted.items():
            if self.rates.get(name) != rate:
                await self.set_rate(service, name, rate)
                self.rates[name] = rate


@pytest.fixture(scope="session")
def e2e_vhost(vhost: str) -> Iterator[str]:
    """The running stack consumes its queues: keep it apart from the integration tests."""
    name = f"{vhost}_e2e"
    create_vhost(name)
    yield name
    delete_vhost(name)


@pytest.fixture(scope="session")
async def api(
    e2e_vhost: str,
    db_prefix: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Api]:
    log_dir: Path = tmp_path_factory.mktemp("service-logs")
    env = {
        **test_env(e2e_vhost),
        "PAYMENT_FAILURE_RATE": "0",
        "SHIPPING_FAILURE_RATE": "0",
        "NOTIFICATION_FAILURE_RATE": "0",
        "PAYMENT_REFUND_FAILURE_RATE": "0",
        "COMPENSATION_MAX_ATTEMPTS": "3",
        "COMPENSATION_RETRY_DELAY": "0.1",
        "NOTIFICATION_RETRY_DELAY": "0.01",
        "ADMIN_API_KEY": ADMIN_KEY,
    }
    stack = Stack(
        env=env,
        ports={s: free_port() for s in SERVICES},
        db_prefix=f"{db_prefix}e2e_",
        log_dir=log_dir,
    )
    async with stack, httpx.AsyncClient(timeout=15) as client:
        yield Api(
            stack,
            client,
            env={s: {knob: "0.0"} for s, knob in RATE_ENV.items()},
            vhost=e2e_vhost,
        )


async def wait_for(check: Any, what: str, timeout: float = 20) -> Any:
    """What `check` returns once it is truthy; fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout}s")
        await asyncio.sleep(0.1)


def money(value: str | int | float) -> Decimal:
    return Decimal(str(value))


@contextlib.asynccontextmanager
async def own_stack(
    name: str,
    db_prefix: str,
    log_dir: Path,
    env: dict[str, str],
    replicas: dict[str, int],
    admin_key: str = ADMIN_KEY,
) -> AsyncIterator[Api]:
    """A stack apart from the session's: its own vhost `name`, databases and ports."""
    create_vhost(name)
    stack = Stack(
        env={
            **test_env(name),
            **{knob: "0" for knob in RATE_ENV.values()},
            "NOTIFICATION_RETRY_DELAY": "0.01",
            "ADMIN_API_KEY": admin_key,
            **env,
        },
        ports={s: free_port() for s in SERVICES},
        db_prefix=db_prefix,
        log_dir=log_dir,
        replicas=replicas,
    )
    try:
        async with stack, httpx.AsyncClient(timeout=15) as client:
            yield Api(
                stack,
                client,
                env={s: {k: "0.0"} for s, k in RATE_ENV.items()},
                vhost=name,
                admin_key=admin_key,
            )
    finally:
        delete_vhost(name)


@pytest.fixture(scope="module")
async def choreographed(
    request: pytest.FixtureRequest,
    vhost: str,
    db_prefix: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Api]:
    """A stack of its own in SAGA_MODE=choreography, beside the session's orchestrated
    one, with the same knobs (an undo is retried by its service: MESSAGE_MAX_RETRIES 2
    is the three attempts COMPENSATION_MAX_ATTEMPTS gives the orchestrator) and a saga
    deadline of 5 s (every saga here ends within two; a module may set another as
    SAGA_DEADLINE_SECONDS)."""
    async with own_stack(
        f"{vhost}_choreography",
        f"{db_prefix}choreo_",
        tmp_path_factory.mktemp("choreography-logs"),
        {
            "SAGA_MODE": "choreography",
            "SAGA_DEADLINE_SECONDS": getattr(request.module, "SAGA_DEADLINE_SECONDS", "5"),
            "DEADLINE_CHECK_INTERVAL": "0.5",
            "MESSAGE_MAX_RETRIES": "2",
            "RETRY_BASE_DELAY": "0.1",
        },
        {},
    ) as api:
        api.mode = "choreography"
        yield api


@pytest.fixture(params=["orchestration", "choreography"])
def saga_api(request: pytest.FixtureRequest) -> Api:
    """The session's stack in each saga style: a test taking it runs once per style."""
    fixture = "api" if request.param == "orchestration" else "choreographed"
    api: Api = request.getfixturevalue(fixture)
    return api


@pytest.fixture(scope="module")
async def replicated(
    vhost: str, db_prefix: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Api]:
    """A stack of its own with two orchestrators and two payment services: what one
    replica is told, or commits, every replica must act on. Module-scoped: it runs
    beside the session's stack."""
    async with own_stack(
        f"{vhost}_replicated",
        f"{db_prefix}replicated_",
        tmp_path_factory.mktemp("replicated-logs"),
        {},
        {"saga_orchestrator": 2, "payment_service": 2},
    ) as api:
        yield api


@pytest.fixture
async def amqp(api: Api) -> AsyncIterator[aio_pika.abc.AbstractChannel]:
    connection = await aio_pika.connect(f"amqp://guest:guest@127.0.0.1:5672/{api.vhost}")
    async with connection:
        yield await connection.channel(publisher_confirms=True)


async def publish(
    channel: aio_pika.abc.AbstractChannel,
    exchange: str,
    key: str,
    body: bytes,
    message_id: str | None = None,
    headers: dict[str, Any] | None = None,
) -> None:
    target = await channel.get_exchange(exchange)
    await target.publish(
        aio_pika.Message(body, message_id=message_id, headers=headers or {}), routing_key=key
    )


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium)")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield browser
        await browser.close()
