"""POST /orders past ORDER_RATE_LIMIT: 429 in the envelope with Retry-After, nothing
stored, and the next customer (or client) served as before. The order service runs as
a process of its own, on its own vhost and database, with a limit of 3 a minute."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from scripts.isolation import create_vhost, delete_vhost, free_port
from scripts.sample import ADDRESS
from scripts.stack import Stack
from tests import support
from tests.support import HUB, PRICES

pytestmark = pytest.mark.e2e

LIMIT = 3


@contextlib.asynccontextmanager
async def order_service(
    name: str, db_prefix: str, log_dir: Path, by: str
) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    create_vhost(name)
    limit = {"ORDER_RATE_LIMIT": f"{LIMIT}/minute", "ORDER_RATE_LIMIT_BY": by}
    env = {**support.test_env(name), **limit}
    stack = Stack(
        env=env,
        ports={"order_service": free_port()},
        db_prefix=db_prefix,
        log_dir=log_dir,
    )
    try:
        await stack.start(["order_service"])
        async with httpx.AsyncClient(timeout=15) as client:
            yield client, f"{stack.url('order_service')}/api/v1"
    finally:
        await stack.stop()
        delete_vhost(name)


def order(customer: str) -> dict[str, object]:
    line = {"product_id": HUB, "quantity": 1, "price": PRICES[HUB]}
    return {"customer_id": customer, "items": [line], "shipping_address": ADDRESS}


async def stored(client: httpx.AsyncClient, base: str, customer: str) -> int:
    response = await client.get(f"{base}/customers/{customer}/orders")
    total: int = response.json()["data"]["total"]
    return total


@pytest.mark.parametrize("by", ["customer", "client"])
async def test_orders_past_the_limit_are_refused_with_retry_after(
    vhost: str, db_prefix: str, tmp_path_factory: pytest.TempPathFactory, by: str
) -> None:
    logs = tmp_path_factory.mktemp(f"rate-limit-{by}")
    async with order_service(f"{vhost}_limit_{by}", f"{db_prefix}limit_{by}_", logs, by) as (
        client,
        base,
    ):
        customer = str(uuid.uuid4())
        for _ in range(LIMIT):
            response = await client.post(f"{base}/orders", json=order(customer))
            assert response.status_code == 201, response.text

        key = str(uuid.uuid4())
        refused = await client.post(
            f"{base}/orders", json=order(customer), headers={"Idempotency-Key": key}
        )
        assert refused.status_code == 429, refused.text
        retry_after = int(refused.headers["Retry-After"])
        assert 1 <= retry_after <= 60
        answer = refused.json()
        assert answer["success"] is False and answer["data"] is None
        assert answer["error"]["code"] == "rate_limited"
        whose = f"customer {customer}" if by == "customer" else "client 127.0.0.1"
        assert answer["error"]["message"] == (
            f"too many orders for {whose}: at most {LIMIT} per 1 minute; retry in {retry_after} s"
        )
        assert await stored(client, base, customer) == LIMIT, "the refused order is not stored"

        other = str(uuid.uuid4())
        response = await client.post(f"{base}/orders", json=order(other))
        if by == "customer":  # another customer has a window of their own
            assert response.status_code == 201, response.text
            assert await stored(client, base, other) == 1
        else:  # the same client, whoever the customer
            assert response.status_code == 429, response.text
            assert await stored(client, base, other) == 0

        invalid = await client.post(f"{base}/orders", json={"customer_id": customer})
        assert invalid.status_code == 422, "a body that does not validate is refused first"
