"""All six services started as real servers on free ports, an isolated vhost and their
own databases; the tests talk to them over HTTP only."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from scripts.invariants import TERMINAL
from scripts.isolation import create_vhost, delete_vhost, free_port
from scripts.sample import ADDRESS
from scripts.stack import SERVICES, Stack
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

    async def failure_rates(
        self, payment: float = 0.0, shipping: float = 0.0, notification: float = 0.0
    ) -> None:
        """Restart only the services whose chaos knob changes."""
        wanted = {
            "payment_service": payment,
            "shipping_service": shipping,
            "notification_service": notification,
        }
        for service, rate in wanted.items():
            value = str(rate)
            if self.env.get(service, {}).get(RATE_ENV[service]) != value:
                await self.stack.restart(service, {RATE_ENV[service]: value})
                self.env.setdefault(service, {})[RATE_ENV[service]] = value


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
