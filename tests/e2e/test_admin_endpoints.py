"""The admin endpoints beside the orchestrator's: stock on the inventory service and the
workers' failure rates, each validated, audited, and safe under concurrency."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from tests.e2e.conftest import Api, line, wait_for

pytestmark = pytest.mark.e2e


async def audit_of(api: Api, service: str, limit: int = 50) -> list[dict[str, Any]]:
    response = await api.get(service, "/admin/audit", limit=limit)
    assert response.status_code == 200, response.text
    entries: list[dict[str, Any]] = response.json()["data"]
    return entries


async def add_stock(api: Api, product: str, body: Any, **headers: str) -> Any:
    return await api.client.post(
        api.url("inventory_service", f"/products/{product}/stock"),
        json=body,
        headers={**api.admin, **headers},
    )


async def test_stock_is_added_audited_and_refused_when_it_would_go_negative(api: Api) -> None:
    product = await api.in_stock(1)
    before = (await api.stock())[product]

    response = await add_stock(api, product, {"quantity": 25}, **{"X-Admin-Actor": "demo"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["data"]["stock"] == before[0] + 25
    assert body["data"]["reserved"] == before[1]
    assert body["message"] == f"product {product}: {before[0]} -> {before[0] + 25} available"
    entry = (await audit_of(api, "inventory_service"))[0]
    assert entry["action"] == "stock.add"
    assert entry["target"] == f"product {product}"
    assert entry["outcome"] == "done"
    assert entry["detail"] == f"+25: {before[0]} -> {before[0] + 25} available"
    assert entry["actor"].startswith("demo from ")
    assert entry["request_id"] == response.headers["X-Request-ID"]

    too_many = before[0] + 26
    response = await add_stock(api, product, {"quantity": -too_many})
    assert response.status_code == 409, response.text
    error = response.json()["error"]
    assert error["code"] == "stock_conflict"
    assert f"cannot remove {too_many}" in error["message"]
    assert (await api.stock())[product] == (before[0] + 25, before[1])
    entry = (await audit_of(api, "inventory_service"))[0]
    assert (entry["action"], entry["outcome"]) == ("stock.add", "conflict")

    response = await add_stock(api, product, {"quantity": -25})
    assert response.status_code == 200, response.text
    assert (await api.stock())[product] == before


@pytest.mark.parametrize(
    "body",
    [
        {"quantity": 0},
        {"quantity": 1.5},
        {"quantity": "5"},
        {"quantity": 100_000_001},
        {"quantity": -100_000_001},
        {},
        {"quantity": 5, "note": "extra"},
        [5],
    ],
)
async def test_a_bad_stock_change_is_refused_and_changes_nothing(api: Api, body: Any) -> None:
    product = await api.in_stock(0)
    before = await api.stock()
    audited = len(await audit_of(api, "inventory_service", 1000))
    response = await add_stock(api, product, body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "validation_error"
    assert await api.stock() == before
    assert len(await audit_of(api, "inventory_service", 1000)) == audited


async def test_stock_changes_need_the_admin_key_and_a_known_product(api: Api) -> None:
    product = await api.in_stock(0)
    before = await api.stock()
    url = api.url("inventory_service", f"/products/{product}/stock")
    response = await api.client.post(url, json={"quantity": 5})
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "admin_key_required"
    response = await api.client.post(url, json={"quantity": 5}, headers={"X-Admin-Key": "x" * 20})
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "admin_key_invalid"
    assert await api.stock() == before

    unknown = str(uuid.uuid4())
    response = await add_stock(api, unknown, {"quantity": 5})
    assert response.status_code == 404, response.text
    assert response.json()["error"]["code"] == "not_found"
    entry = (await audit_of(api, "inventory_service"))[0]
    assert (entry["target"], entry["outcome"]) == (f"product {unknown}", "not_found")


async def test_stock_changes_racing_reservations_lose_nothing_and_never_go_negative(
    api: Api,
) -> None:
    """Orders reserve one product while stock is added and taken away on it at once: what
    is available plus what is reserved moves by exactly the changes that succeeded."""
    await api.failure_rates()
    product = await api.in_stock(40)
    stock, reserved = (await api.stock())[product]

    async def change(quantity: int) -> int:
        response = await add_stock(api, product, {"quantity": quantity})
        assert response.status_code in (200, 409), response.text
        return quantity if response.status_code == 200 else 0

    # Together the removals ask for twice what could ever be there, so some are refused.
    removal = -((stock + 100) // 3)
    orders = [api.place([line(product, 1)]) for _ in range(30)]
    changes = [change(5) for _ in range(20)] + [change(removal) for _ in range(6)]
    results = await asyncio.gather(*orders, *changes)
    applied = sum(results[len(orders) :])
    assert any(r == 0 for r in results[len(orders) + 20 :]), "no removal was refused"
    for order in results[: len(orders)]:
        await api.wait_terminal(order["id"])

    async def settled() -> tuple[int, int] | None:
        now = (await api.stock())[product]
        return now if now[0] + now[1] == stock + reserved + applied else None

    after = await wait_for(settled, "stock and reservations adding up")
    assert after[0] >= 0
    if applied:  # undo the net change: later tests check stock against the seed's
        assert (await add_stock(api, product, {"quantity": -applied})).status_code == 200
    audit = [
        e
        for e in await audit_of(api, "inventory_service", 1000)
        if e["target"] == f"product {product}"
    ][:26]
    assert sorted(e["outcome"] for e in audit) == sorted(
        "done" if r else "conflict" for r in results[len(orders) :]
    )


# ---------------------------------------------------------------- failure rates


async def rates_of(api: Api, instance: str) -> dict[str, dict[str, Any]]:
    response = await api.client.get(f"{api.stack.url(instance)}/api/v1/admin/failure-rates")
    assert response.status_code == 200, response.text
    return {r["name"]: r for r in response.json()["data"]}


async def test_a_failure_rate_set_on_one_replica_applies_on_every_replica(
    replicated: Api,
) -> None:
    api = replicated
    first, second = api.stack.instances("payment_service")
    assert (await rates_of(api, second))["payment"] == {
        "name": "payment",
        "rate": 0.0,
        "default": 0.0,
        "env": "PAYMENT_FAILURE_RATE",
        "source": "environment",
    }
    response = await api.client.put(
        f"{api.stack.url(first)}/api/v1/admin/failure-rates/payment",
        json={"rate": 1.0},
        headers={**api.admin, "X-Admin-Actor": "presenter"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["data"]["rate"] == 1.0

    async def applied() -> bool:
        return (await rates_of(api, second))["payment"]["source"] == "operator"

    await wait_for(applied, "the second payment replica taking the new rate", timeout=5)
    assert (await rates_of(api, second))["payment"]["rate"] == 1.0
    # whichever replica takes them, every charge is declined now
    orders = [await api.place([line(await api.in_stock(1), 1)]) for _ in range(4)]
    for order in orders:
        assert (await api.wait_terminal(order["id"]))["status"] == "cancelled"

    assert (await api.set_rate("payment_service", "payment", None))["source"] == "environment"

    async def back() -> bool:
        rates = [await rates_of(api, i) for i in (first, second)]
        return all(r["payment"]["rate"] == 0.0 for r in rates)

    await wait_for(back, "both payment replicas back on the environment's rate", timeout=5)
    order = await api.place([line(await api.in_stock(1), 1)])
    assert (await api.wait_terminal(order["id"]))["status"] == "completed"
    entries = [
        e for e in await audit_of(api, "payment_service") if e["action"] == "failure_rate.set"
    ]
    assert [(e["detail"], e["actor"].split(" ")[0]) for e in entries[:2]] == [
        ("1.0 -> 0.0 (environment's value)", "admin"),
        ("0.0 -> 1.0 (set)", "presenter"),
    ]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"rate": 1.5}, 422),
        ({"rate": -0.1}, 422),
        ({"rate": "half"}, 422),
        ({}, 422),
        ({"rate": 0.5, "extra": 1}, 422),
    ],
)
async def test_a_bad_failure_rate_is_refused_and_changes_nothing(
    api: Api, body: Any, status: int
) -> None:
    url = api.url("shipping_service", "/admin/failure-rates/shipping")
    before = await rates_of(api, "shipping_service")
    response = await api.client.put(url, json=body, headers=api.admin)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == "validation_error"
    assert await rates_of(api, "shipping_service") == before


async def test_failure_rates_need_the_key_and_a_known_name(api: Api) -> None:
    url = api.url("notification_service", "/admin/failure-rates")
    response = await api.client.put(f"{url}/notification", json={"rate": 0.5})
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "admin_key_required"
    response = await api.client.put(f"{url}/mail", json={"rate": 0.5}, headers=api.admin)
    assert response.status_code == 404
    assert "notification_service has: notification" in response.json()["error"]["message"]
    assert (await rates_of(api, "notification_service"))["notification"]["rate"] == 0.0
    # the order service simulates nothing: it has no such endpoint
    response = await api.get("order_service", "/admin/failure-rates")
    assert response.status_code == 404


async def test_an_operators_rate_lasts_while_the_service_runs_not_into_its_next_run(
    replicated: Api,
) -> None:
    api = replicated
    first, second = api.stack.instances("payment_service")
    await api.set_rate("payment_service", "payment_refund", 0.5)
    await api.stack.restart(second)  # the first replica runs on: the value stays
    assert (await rates_of(api, second))["payment_refund"]["rate"] == 0.5
    await api.stack.stop(["payment_service"])  # every replica: this run of it is over
    await api.stack.start(["payment_service"])
    for instance in (first, second):
        rate = (await rates_of(api, instance))["payment_refund"]
        assert (rate["rate"], rate["source"]) == (0.0, "environment"), instance
