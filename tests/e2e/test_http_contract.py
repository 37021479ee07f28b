"""The HTTP contract: the envelope on every answer, 4xx (never 500) for bad input with
nothing stored, idempotent order creation, pagination, 404s and health checks."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from scripts.stack import SERVICES
from tests.e2e.conftest import ADDRESS, HUB, LAPTOP, MOUSE, Api, line

pytestmark = pytest.mark.e2e

ENVELOPE_KEYS = {"success", "message", "data", "error", "timestamp", "request_id"}
# A customer with no orders; fixed, as test ids must be the same in every pytest-xdist worker.
NOBODY = "00000000-0000-4000-8000-000000000000"


def valid_body(customer: str, **overrides: object) -> dict:
    return {
        "customer_id": customer,
        "items": [line(MOUSE, 1)],
        "shipping_address": ADDRESS,
        **overrides,
    }


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"items": []}, "items"),
        ({"items": [{"product_id": MOUSE, "quantity": 0, "price": "49.99"}]}, "quantity"),
        ({"items": [{"product_id": MOUSE, "quantity": -3, "price": "49.99"}]}, "quantity"),
        ({"items": [{"product_id": MOUSE, "quantity": 1, "price": "49.999"}]}, "price"),
        ({"items": [{"product_id": MOUSE, "quantity": 1, "price": "-1"}]}, "price"),
        ({"items": [{"product_id": "not-a-uuid", "quantity": 1, "price": "1"}]}, "product_id"),
        ({"customer_id": "42"}, "customer_id"),
        ({"shipping_address": {**ADDRESS, "city": ""}}, "city"),
        ({"shipping_address": None}, "shipping_address"),
        ({"coupon": "FREE"}, "coupon"),
    ],
    ids=[
        "no-items",
        "zero-qty",
        "negative-qty",
        "3-decimals",
        "negative-price",
        "bad-uuid",
        "bad-customer",
        "empty-city",
        "no-address",
        "unknown-field",
    ],
)
async def test_invalid_order_is_a_422_with_the_envelope_and_stores_nothing(
    api: Api, change: dict, field: str
) -> None:
    customer = str(uuid.uuid4())
    response = await api.client.post(
        api.url("order_service", "/orders"), json={**valid_body(customer), **change}
    )
    assert response.status_code == 422
    body = response.json()
    assert set(body) == ENVELOPE_KEYS
    assert body["success"] is False and body["data"] is None
    assert body["error"]["code"] == "validation_error"
    assert field in body["error"]["message"]
    assert any(field in d["field"] for d in body["error"]["details"])
    listing = await api.data("order_service", f"/customers/{customer}/orders")
    assert listing["total"] == 0


@pytest.mark.parametrize("raw", [b"{broken", b"", b"[]", b'"text"'])
async def test_malformed_body_is_a_4xx_not_a_500(api: Api, raw: bytes) -> None:
    response = await api.client.post(
        api.url("order_service", "/orders"),
        content=raw,
        headers={"content-type": "application/json"},
    )
    assert 400 <= response.status_code < 500
    assert response.json()["success"] is False


async def test_large_quantities_are_accepted_and_left_to_the_saga(api: Api) -> None:
    await api.failure_rates()
    order = await api.place([line(HUB, 1000)])  # the most one line takes, more than is stocked
    done = await api.wait_terminal(order["id"])
    assert done["status"] == "cancelled"
    assert "insufficient_stock" in done["failure_reason"]


async def test_idempotency_key_returns_the_same_order(api: Api) -> None:
    customer = str(uuid.uuid4())
    key = f"checkout-{uuid.uuid4()}"
    first = await api.place(
        [line(MOUSE, 1)], customer_id=customer, headers={"Idempotency-Key": key}
    )
    second = await api.client.post(
        api.url("order_service", "/orders"),
        json=valid_body(customer),
        headers={"Idempotency-Key": key},
    )
    assert second.status_code == 201
    assert second.headers.get("idempotent-replayed") == "true"
    assert second.json()["data"]["id"] == first["id"]

    conflict = await api.client.post(
        api.url("order_service", "/orders"),
        headers={"Idempotency-Key": key},
        json=valid_body(customer, items=[line(MOUSE, 2)]),
    )
    assert conflict.status_code == 409
    assert conflict.json()["error"]["code"] == "idempotency_conflict"
    listing = await api.data("order_service", f"/customers/{customer}/orders")
    assert listing["total"] == 1


async def test_customer_orders_are_newest_first_and_paginated(api: Api) -> None:
    customer = str(uuid.uuid4())
    placed = [await api.place([line(MOUSE, 1)], customer_id=customer) for _ in range(3)]
    page1 = await api.data("order_service", f"/customers/{customer}/orders?page=1&page_size=2")
    page2 = await api.data("order_service", f"/customers/{customer}/orders?page=2&page_size=2")
    assert page1["total"] == page2["total"] == 3
    ids = [o["id"] for o in page1["items"] + page2["items"]]
    assert ids == [o["id"] for o in reversed(placed)]
    bad = await api.get("order_service", f"/customers/{customer}/orders", page=0)
    assert bad.status_code == 422


@pytest.mark.parametrize(
    ("service", "path"),
    [
        ("order_service", "/orders/{id}"),
        ("payment_service", "/orders/{id}/payment"),
        ("inventory_service", "/orders/{id}/reservation"),
        ("inventory_service", "/products/{id}"),
        ("shipping_service", "/orders/{id}/shipment"),
        ("saga_orchestrator", "/sagas/{id}"),
    ],
)
async def test_unknown_ids_are_404_with_the_envelope(api: Api, service: str, path: str) -> None:
    response = await api.get(service, path.format(id=uuid.uuid4()))
    assert response.status_code == 404
    body = response.json()
    assert set(body) == ENVELOPE_KEYS
    assert body["error"]["code"] == "not_found"
    bad = await api.get(service, path.format(id="not-a-uuid"))
    assert bad.status_code == 422


async def test_notifications_of_an_unknown_order_are_an_empty_list(api: Api) -> None:
    assert await api.data("notification_service", f"/orders/{uuid.uuid4()}/notifications") == []


async def test_products_carry_stock_and_reserved(api: Api) -> None:
    products = await api.data("inventory_service", "/products")
    assert len(products) == 5
    laptop = await api.data("inventory_service", f"/products/{LAPTOP}")
    assert laptop["name"] == "Laptop Pro 15" and laptop["price"] == "1299.99"
    assert {"stock", "reserved"} <= set(laptop)


async def test_sagas_are_listed_filtered_and_paginated(api: Api) -> None:
    listing = (await api.get("saga_orchestrator", "/sagas", page_size=1)).json()["data"]
    assert listing["page_size"] == 1 and len(listing["items"]) <= 1
    bad = await api.get("saga_orchestrator", "/sagas", status="exploded")
    assert bad.status_code == 422


@pytest.mark.parametrize("service", SERVICES)
async def test_health_endpoints(api: Api, service: str) -> None:
    health = await api.get(service, "/health")
    assert health.status_code == 200
    deps = health.json()["data"]["dependencies"]
    assert deps["database"]["status"] == "up" and deps["rabbitmq"]["status"] == "up"
    assert (await api.get(service, "/health/live")).status_code == 200
    assert (await api.get(service, "/health/ready")).status_code == 200


async def test_request_id_is_echoed(api: Api) -> None:
    response = await api.client.get(
        api.url("order_service", "/health/live"), headers={"X-Request-ID": "trace-123"}
    )
    assert response.headers["x-request-id"] == "trace-123"
    assert response.json()["request_id"] == "trace-123"


@pytest.mark.parametrize(
    ("service", "path"),
    [
        ("saga_orchestrator", "/sagas?page=100001"),
        ("saga_orchestrator", "/sagas?page=2305843009213693952"),
        ("order_service", f"/customers/{NOBODY}/orders?page=13279644491954067079168"),
    ],
)
async def test_a_page_past_the_bound_is_a_422_not_a_500(api: Api, service: str, path: str) -> None:
    response = await api.get(service, path)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert error["details"][0]["field"] == "query.page"


async def test_a_method_a_path_does_not_take_is_a_405_naming_the_ones_it_does(api: Api) -> None:
    response = await api.client.request("TRACE", api.url("order_service", "/orders"))
    assert response.status_code == 405
    assert response.headers["Allow"] == "POST"
    assert response.json()["error"]["code"] == "method_not_allowed"
    response = await api.client.delete(api.url("saga_orchestrator", f"/sagas/{uuid.uuid4()}"))
    assert response.status_code == 405
    assert response.headers["Allow"] == "GET, HEAD"


@pytest.mark.parametrize("service", SERVICES)
async def test_every_operation_documents_its_error_statuses_with_the_envelope(
    api: Api, service: str
) -> None:
    spec = (await api.client.get(f"{api.stack.url(service)}/openapi.json")).json()
    envelope = {"$ref": "#/components/schemas/ErrorEnvelope"}
    assert "ErrorEnvelope" in spec["components"]["schemas"]
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            where = f"{service} {method.upper()} {path}"
            assert responses["503"]["content"]["application/json"]["schema"] == envelope, where
            if "{" in path:
                assert "404" in responses, where
            if operation.get("parameters") or operation.get("requestBody"):
                assert responses["422"]["content"]["application/json"]["schema"] == envelope
            if (method != "get" and "/admin/" in path) or path.endswith(("/retry", "/stock")):
                assert "403" in responses, where


async def test_a_body_past_the_limit_is_a_413_and_stores_nothing(api: Api) -> None:
    customer = str(uuid.uuid4())
    huge = valid_body(customer, shipping_address={**ADDRESS, "street": "x" * 70_000})
    response = await api.client.post(api.url("order_service", "/orders"), json=huge)
    assert response.status_code == 413, response.text
    assert set(response.json()) == ENVELOPE_KEYS
    assert response.json()["error"]["code"] == "payload_too_large"

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it comes
        yield b'{"customer_id": "' + customer.encode() + b'", "items": ['
        for _ in range(2000):
            yield b'{"product_id": "' + MOUSE.encode() + b'", "quantity": 1, "price": "1"},'
        yield b"]}"

    response = await api.client.post(
        api.url("order_service", "/orders"),
        content=chunks(),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "payload_too_large"
    orders = await api.get("order_service", f"/customers/{customer}/orders")
    assert orders.json()["data"]["total"] == 0


@pytest.mark.parametrize("service", ["order_service", "saga_orchestrator"])
async def test_a_body_nested_too_deep_is_a_400_not_a_500(api: Api, service: str) -> None:
    """Nesting is bounded by the JSON parser (about 1,000 levels), well inside the size
    limit: a deeper body is refused whole, and nothing is stored."""
    customer = str(uuid.uuid4())
    deep = b'{"customer_id": "' + customer.encode() + b'", "items": ' + b"[" * 5000
    deep += b"]" * 5000 + b"}"
    path = "/orders" if service == "order_service" else f"/sagas/{uuid.uuid4()}/compensate"
    response = await api.client.post(
        api.url(service, path),
        content=deep,
        headers={"Content-Type": "application/json", **api.admin},
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "bad_request"
    orders = await api.get("order_service", f"/customers/{customer}/orders")
    assert orders.json()["data"]["total"] == 0
