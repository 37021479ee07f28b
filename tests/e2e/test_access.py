"""Who may do what, against the six services started as real servers with AUTH_MODE=jwt,
then again with AUTH_MODE=apikey: every endpoint of every process (read off the
processes' own API descriptions, so a new route cannot go untried) against no
credentials, bad ones and every role; a customer's own records and nobody else's; and
no secret in any log line or response of the whole run."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from playwright.async_api import Browser, expect

from scripts.isolation import create_vhost, delete_vhost, free_port
from scripts.sample import ADDRESS
from scripts.stack import SERVICES, Stack
from shared_domain.auth import Access
from tests import support
from tests.e2e.browser import TIMEOUT, Console
from tests.e2e.conftest import LAPTOP, line, wait_for
from tests.metrics_support import PROMETHEUS, PrometheusServer

pytestmark = pytest.mark.e2e

SECRET = f"jwt-secret-{uuid.uuid4().hex}-{uuid.uuid4().hex}"
ADMIN_KEY = f"admin-key-{uuid.uuid4().hex}"
OPERATOR_KEY = f"operator-key-{uuid.uuid4().hex}"
ISSUER, AUDIENCE = "order-saga", "order-saga-api"
CUSTOMER_A, CUSTOMER_B = str(uuid.uuid4()), str(uuid.uuid4())


@dataclass(frozen=True)
class Endpoint:
    """One operation of one process, as a caller meets it."""

    service: str
    method: str
    path: str  # the template the API description gives (under /api/v1, but /metrics)
    access: Access
    owned: bool = False  # a customer's own record: another customer is told it is not there
    ok: int = 200  # what a caller who may call it gets here
    hidden: int = 404  # what another customer gets (a list: the empty one, as if unknown)
    body: Any = None


def _common(service: str, knob: str | None, audited: bool = True) -> list[Endpoint]:
    rows = [
        Endpoint(service, "GET", "/health", Access.PUBLIC),
        Endpoint(service, "GET", "/health/live", Access.PUBLIC),
        Endpoint(service, "GET", "/health/ready", Access.PUBLIC),
        Endpoint(service, "GET", "/metrics", Access.OPERATOR),
    ]
    if audited:  # a service with admin actions of its own
        rows += [
            Endpoint(service, "GET", "/admin/status", Access.PUBLIC),
            Endpoint(service, "GET", "/admin/audit", Access.OPERATOR),
        ]
    if knob is not None:
        rows += [
            Endpoint(service, "GET", "/admin/failure-rates", Access.OPERATOR),
            Endpoint(
                service, "PUT", "/admin/failure-rates/{name}", Access.ADMIN, body={"rate": 0.0}
            ),
            Endpoint(service, "DELETE", "/admin/failure-rates/{name}", Access.ADMIN),
        ]
    return rows


# Customer A's order, whoever places it.
ORDER_BODY = {"customer_id": CUSTOMER_A, "items": [line(LAPTOP)], "shipping_address": ADDRESS}
ORCH, ORDER, PAYMENT, INVENTORY, SHIPPING, NOTIFICATION = SERVICES
ENDPOINTS: list[Endpoint] = [
    *_common(ORCH, None),
    Endpoint(ORCH, "GET", "/sagas", Access.OPERATOR),
    Endpoint(ORCH, "GET", "/sagas/stream", Access.OPERATOR),
    Endpoint(ORCH, "GET", "/sagas/{saga_id}", Access.OPERATOR),
    Endpoint(ORCH, "GET", "/sagas/{saga_id}/stream", Access.OPERATOR),
    Endpoint(ORCH, "GET", "/sagas/{saga_id}/holdings", Access.OPERATOR),
    Endpoint(ORCH, "POST", "/sagas/{saga_id}/retry", Access.ADMIN, ok=409),  # it completed
    Endpoint(ORCH, "POST", "/sagas/{saga_id}/compensate", Access.ADMIN, ok=409),
    Endpoint(ORCH, "GET", "/dlq", Access.OPERATOR),
    Endpoint(ORCH, "GET", "/dlq/{queue}/messages", Access.OPERATOR),
    Endpoint(ORCH, "GET", "/dlq/{queue}/messages/{key}", Access.OPERATOR, ok=404),
    Endpoint(ORCH, "POST", "/dlq/{queue}/messages/{key}/replay", Access.ADMIN, ok=404),
    Endpoint(ORCH, "POST", "/dlq/{queue}/messages/{key}/discard", Access.ADMIN, ok=404),
    Endpoint(ORCH, "POST", "/dlq/{queue}/replay", Access.ADMIN),
    Endpoint(ORCH, "GET", "/console/overview", Access.OPERATOR),
    *_common(ORDER, None, audited=False),
    Endpoint(ORDER, "POST", "/orders", Access.CUSTOMER, ok=201, body=ORDER_BODY),
    Endpoint(ORDER, "GET", "/orders/{order_id}", Access.CUSTOMER, owned=True),
    Endpoint(ORDER, "GET", "/customers/{customer_id}/orders", Access.CUSTOMER, owned=True),
    *_common(PAYMENT, "payment"),
    Endpoint(PAYMENT, "GET", "/orders/{order_id}/payment", Access.CUSTOMER, owned=True),
    *_common(INVENTORY, None),
    Endpoint(INVENTORY, "GET", "/products", Access.CUSTOMER),
    Endpoint(INVENTORY, "GET", "/products/{product_id}", Access.CUSTOMER),
    Endpoint(INVENTORY, "GET", "/orders/{order_id}/reservation", Access.CUSTOMER, owned=True),
    Endpoint(INVENTORY, "POST", "/products/{product_id}/stock", Access.ADMIN, body={"quantity": 1}),
    *_common(SHIPPING, "shipping"),
    Endpoint(SHIPPING, "GET", "/orders/{order_id}/shipment", Access.CUSTOMER, owned=True),
    *_common(NOTIFICATION, "notification"),
    Endpoint(
        NOTIFICATION,
        "GET",
        "/orders/{order_id}/notifications",
        Access.CUSTOMER,
        owned=True,
        hidden=200,
    ),
]
KNOBS = {PAYMENT: "payment", SHIPPING: "shipping", NOTIFICATION: "notification"}


def token(role: str, subject: str, **changes: Any) -> str:
    now = datetime.now(UTC)
    claims = {"sub": subject, "role": role, "iss": ISSUER, "aud": AUDIENCE, "iat": now}
    claims["exp"] = now + timedelta(minutes=30)
    key = changes.pop("key", SECRET)
    claims.update(changes)
    return jwt.encode(claims, key, algorithm="HS256")


def sagactl_token(role: str, subject: str) -> str:
    """A token as the README has one made: `sagactl token`, for the configured secret."""
    env = {**os.environ, "JWT_SECRET": SECRET, "AUTH_MODE": "jwt"}
    done = subprocess.run(
        [sys.executable, "-m", "saga_orchestrator.cli", "token", "--role", role,
         "--subject", subject],
        env=env, capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    return done.stdout.strip()


@dataclass
class Seen:
    """Every answer of the run, kept for the secrets scan."""

    texts: list[str] = field(default_factory=list)

    def add(self, response: httpx.Response, body: str) -> None:
        headers = "\n".join(f"{k}: {v}" for k, v in response.headers.items())
        self.texts.append(f"{response.status_code}\n{headers}\n{body}")


@dataclass
class Secured:
    stack: Stack
    client: httpx.AsyncClient
    log_dir: Path
    seen: Seen = field(default_factory=Seen)
    values: dict[str, str] = field(default_factory=dict)  # what fills the path templates

    def url(self, endpoint: Endpoint) -> str:
        path = endpoint.path.format(**self.values)
        prefix = "" if path == "/metrics" else "/api/v1"
        return f"{self.stack.url(endpoint.service)}{prefix}{path}"

    async def call(
        self, endpoint: Endpoint, headers: dict[str, str], body: Any = None
    ) -> httpx.Response:
        url = self.url(endpoint)
        content = body if body is not None else endpoint.body
        if endpoint.path.endswith("/stream"):
            async with self.client.stream(endpoint.method, url, headers=headers) as response:
                # The head says who may follow it; the events are the saga's, as elsewhere.
                text = "" if response.status_code == 200 else (await response.aread()).decode()
        else:
            response = await self.client.request(
                endpoint.method, url, headers=headers, json=content
            )
            text = response.text
        self.seen.add(response, text)
        return response


SENT: set[str] = set()  # every credential the tests send, for the secrets scan


def bearer(value: str) -> dict[str, str]:
    SENT.add(value)
    return {"Authorization": f"Bearer {value}"}


@pytest.fixture(scope="module")
async def secured(
    vhost: str, db_prefix: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Secured]:
    name = f"{vhost}_auth"
    create_vhost(name)
    log_dir = tmp_path_factory.mktemp("auth-logs")
    env = {
        **support.test_env(name),
        "AUTH_MODE": "jwt",
        "JWT_SECRET": SECRET,
        "ADMIN_API_KEY": ADMIN_KEY,
        "OPERATOR_API_KEY": OPERATOR_KEY,
        "PAYMENT_FAILURE_RATE": "0",
        "SHIPPING_FAILURE_RATE": "0",
        "NOTIFICATION_FAILURE_RATE": "0",
    }
    stack = Stack(
        env=env,
        ports={s: free_port() for s in SERVICES},
        db_prefix=f"{db_prefix}auth_",
        log_dir=log_dir,
    )
    try:
        async with stack, httpx.AsyncClient(timeout=15) as client:
            yield Secured(stack, client, log_dir)
    finally:
        delete_vhost(name)


async def _completed_order(s: Secured, owner: str) -> dict[str, Any]:
    """An order placed and seen through to the end by its own customer."""
    place = next(e for e in ENDPOINTS if e.path == "/orders")
    response = await s.call(place, bearer(owner))
    assert response.status_code == 201, response.text
    order: dict[str, Any] = response.json()["data"]
    read = next(e for e in ENDPOINTS if e.path == "/orders/{order_id}")
    s.values["order_id"] = order["id"]
    deadline = time.monotonic() + 30
    while order["status"] not in ("completed", "cancelled", "failed"):
        assert time.monotonic() < deadline, f"order {order['id']} still {order['status']}"
        await asyncio.sleep(0.1)
        answer = await s.call(read, bearer(owner))
        assert answer.status_code == 200, answer.text
        order = answer.json()["data"]
    assert order["status"] == "completed", order
    return order


async def _fill(s: Secured, admin: dict[str, str]) -> None:
    """Real values for every path template: the order, its saga, a product, a queue."""
    order = await _completed_order(s, token("customer", CUSTOMER_A))
    queues = await s.client.get(f"{s.stack.url(ORCH)}/api/v1/dlq", headers=admin)
    assert queues.status_code == 200, queues.text
    s.values |= {
        "saga_id": order["saga_id"],
        "customer_id": CUSTOMER_A,
        "product_id": LAPTOP,
        "queue": queues.json()["data"][0]["queue"],
        "key": str(uuid.uuid4()),
    }


async def test_the_table_covers_every_operation_of_every_process(secured: Secured) -> None:
    """Each process's own API description lists the operations; the table has each one
    (and the undocumented /metrics), and with AUTH_MODE=jwt the description says which
    take a bearer token."""
    for service in SERVICES:
        answer = await secured.client.get(f"{secured.stack.url(service)}/openapi.json")
        spec = answer.json()
        documented = {
            (method.upper(), path.removeprefix("/api/v1")): op
            for path, operations in spec["paths"].items()
            for method, op in operations.items()
        }
        rows = {(e.method, e.path): e for e in ENDPOINTS if e.service == service}
        assert set(documented) | {("GET", "/metrics")} == set(rows), service
        for key, operation in documented.items():
            checked = rows[key].access is not Access.PUBLIC
            assert ("security" in operation) is checked, (service, key)
            assert ("401" in operation["responses"]) is checked, (service, key)
        assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


async def test_jwt_every_endpoint_against_every_role(secured: Secured) -> None:
    admin_token = sagactl_token("admin", "ada")
    await _fill(secured, bearer(admin_token))
    callers = {
        "nobody": {},
        "expired": bearer(token("operator", "olga", exp=datetime.now(UTC) - timedelta(hours=1))),
        "bad signature": bearer(token("admin", "ada", key="another-secret-" + "x" * 32)),
        "wrong audience": bearer(token("admin", "ada", aud="someone-else")),
        "not a token": bearer("not.a.token"),
        "customer": bearer(token("customer", CUSTOMER_A)),
        "other customer": bearer(token("customer", CUSTOMER_B)),
        "operator": bearer(sagactl_token("operator", "olga")),
        "admin": bearer(admin_token),
    }
    await _try_every_endpoint(secured, callers, _expected_jwt)


Expected = Callable[[Endpoint, str], tuple[int, str | None]]


async def _try_every_endpoint(
    secured: Secured, callers: dict[str, dict[str, str]], expected: Expected
) -> None:
    for endpoint in ENDPOINTS:
        if endpoint.service in KNOBS:
            secured.values["name"] = KNOBS[endpoint.service]
        for who, headers in callers.items():
            response = await secured.call(endpoint, headers)
            want, code = expected(endpoint, who)
            where = f"{who}: {endpoint.method} {endpoint.service} {endpoint.path}"
            assert response.status_code == want, f"{where}: {response.text[:300]}"
            if code is not None:
                assert response.json()["error"]["code"] == code, where
            if want == 401:
                assert response.headers["WWW-Authenticate"].startswith("Bearer"), where


def _expected_jwt(e: Endpoint, who: str) -> tuple[int, str | None]:
    if e.access is Access.PUBLIC:
        return e.ok, None
    if who == "nobody":
        return 401, "unauthenticated"
    if who in ("expired", "bad signature", "wrong audience", "not a token"):
        return 401, "invalid_token"
    role = who.removeprefix("other ")
    if e.path == "/orders" and e.method == "POST":  # a customer orders for themselves
        return (e.ok, None) if who in ("customer", "admin") else (403, "forbidden")
    allowed = {
        Access.CUSTOMER: ("customer", "operator", "admin"),
        Access.OPERATOR: ("operator", "admin"),
        Access.ADMIN: ("admin",),
    }[e.access]
    if role not in allowed:
        return 403, "forbidden"
    if who == "other customer" and e.owned:
        return e.hidden, "not_found" if e.hidden == 404 else None  # never a hint it exists
    return e.ok, None


async def test_a_customer_reads_every_record_of_their_own_order_only(secured: Secured) -> None:
    assert "order_id" in secured.values, "runs after the table has placed its order"
    owner, other = token("customer", CUSTOMER_A), token("customer", CUSTOMER_B)
    for endpoint in (e for e in ENDPOINTS if e.owned):
        mine = await secured.call(endpoint, bearer(owner))
        assert mine.status_code == 200, mine.text
        data = mine.json()["data"]
        if endpoint.path.startswith("/customers/"):
            data = data["items"]  # a page of orders
        for record in data if isinstance(data, list) else [data]:
            assert record["customer_id"] == CUSTOMER_A, (endpoint.path, record)
        theirs = await secured.call(endpoint, bearer(other))
        assert theirs.status_code == endpoint.hidden, theirs.text
        if "{order_id}" not in endpoint.path:
            continue
        unknown = await secured.client.get(
            secured.url(endpoint).replace(secured.values["order_id"], str(uuid.uuid4())),
            headers=bearer(other),
        )
        # Not theirs reads as not there: the same answer, but for the id it names.
        assert unknown.status_code == theirs.status_code
        assert (unknown.json()["error"] or {}).get("code") == (theirs.json()["error"] or {}).get(
            "code"
        )
        assert unknown.json()["data"] == theirs.json()["data"]


async def test_the_console_signs_in_with_a_token_and_offers_what_the_role_may_do(
    secured: Secured, browser: Browser
) -> None:
    saga_id = secured.values["saga_id"]
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    page = await context.new_page()
    page.set_default_timeout(TIMEOUT)
    tab = Console(page, f"{secured.stack.url(ORCH)}/console/")
    state = page.locator("[data-testid=admin-state]")
    try:
        for _ in range(3):  # the list, its live stream, and its reload: refused, and shown
            tab.expect_refusal(401)
        await tab.open("#/sagas", key=False)
        await expect(state).to_contain_text("not signed in")
        results = page.locator("[data-testid=saga-results]")
        await expect(results).to_contain_text("this endpoint needs credentials")

        await page.fill("[data-testid=admin-key]", token("operator", "olga"))
        await page.click("[data-testid=admin-form] button[type=submit]")
        await expect(state).to_contain_text("signed in as olga (operator): actions are off")
        row = page.locator(f"[data-testid=saga-table] tr[data-saga='{saga_id}']")
        await expect(row).to_be_visible()
        await expect(page.locator("[data-testid=live]")).to_have_attribute("data-state", "live")
        await tab.go(f"#/sagas/{saga_id}")
        holding = page.locator("[data-testid=holdings] [data-holding=payment]")
        await expect(holding).to_contain_text(CUSTOMER_A)  # read with the operator's token
        retry = page.locator("[data-testid=retry]")
        await expect(retry).to_be_disabled()
        await expect(retry).to_have_attribute("title", "the operator role may not do this")

        await page.fill("[data-testid=admin-key]", token("admin", "ada"))
        await page.click("[data-testid=admin-form] button[type=submit]")
        await expect(state).to_contain_text("signed in as ada (admin)")
        await expect(page.locator("[data-testid=retry]")).to_be_enabled()
        await tab.shot("console-signed-in")
        for _ in range(3):  # the saga page, read again signed out
            tab.expect_refusal(401)
        await page.click("[data-testid=sign-out]")
        await expect(state).to_contain_text("not signed in")
        await expect(page.locator("#notice")).to_contain_text("needs credentials")
    finally:
        await tab.shot("test_the_console_signs_in_with_a_token", full_page=True)
        await context.close()
    assert not tab.errors, f"the browser's console showed errors: {tab.errors}"


@pytest.mark.skipif(PROMETHEUS is None, reason="the prometheus server is not installed")
async def test_a_real_prometheus_scrapes_with_an_operator_token_and_not_without(
    secured: Secured, tmp_path: Path
) -> None:
    secret = tmp_path / "operator.token"
    secret.write_text(token("operator", "prometheus"))
    secret.chmod(0o600)
    jobs = {s: [f"127.0.0.1:{secured.stack.port(s)}"] for s in SERVICES}
    jobs["anonymous"] = [f"127.0.0.1:{secured.stack.port(ORCH)}"]
    server = PrometheusServer(jobs, tmp_path, credentials={s: secret for s in SERVICES})
    async with server:

        async def scraped() -> dict[tuple[str, str], tuple[str, str]] | None:
            states = await server.target_states()
            settled = len(states) == len(jobs) and all(h != "unknown" for h, _ in states.values())
            return states if settled else None

        states = await wait_for(scraped, "every target scraped once")
        for (job, url), (health, error) in states.items():
            if job == "anonymous":
                assert health == "down" and "401" in error, (url, error)
            else:
                assert health == "up", (job, url, error)
        assert await server.value('count(saga_instances_total{job="saga_orchestrator"})')


async def test_apikey_every_endpoint_against_every_key(secured: Secured) -> None:
    assert "order_id" in secured.values, "runs after the jwt table has placed its order"
    await asyncio.gather(*(secured.stack.restart(s, {"AUTH_MODE": "apikey"}) for s in SERVICES))
    callers = {
        "nobody": {},
        "wrong key": bearer("not-the-key-0123456789"),
        "operator": bearer(OPERATOR_KEY),
        "admin": bearer(ADMIN_KEY),
        "admin (X-Admin-Key)": {"X-Admin-Key": ADMIN_KEY},
    }
    await _try_every_endpoint(secured, callers, _expected_apikey)


def _expected_apikey(e: Endpoint, who: str) -> tuple[int, str | None]:
    # The customer's routes stay open (no customer identity in a shared key); the
    # operator's and the admin's need their keys.
    if e.access in (Access.PUBLIC, Access.CUSTOMER):
        return e.ok, None
    if who == "nobody":
        return 401, "unauthenticated"
    if who == "wrong key":
        return 401, "invalid_key"
    if e.access is Access.ADMIN and who == "operator":
        return 403, "forbidden"
    return e.ok, None


async def test_no_secret_is_logged_or_returned(secured: Secured) -> None:
    """Runs last: the whole module's log lines and answers, the refused credentials'
    among them, hold none of the configured secrets nor any token sent."""
    assert len(secured.seen.texts) > 500, "the tables above ran first"
    await secured.stack.stop()  # every log line written and flushed
    logs = {p.name: p.read_text() for p in secured.log_dir.glob("*.log")}
    assert set(logs) >= {f"{s}.log" for s in SERVICES}
    assert any("refused" in text for text in logs.values()), "the refusals were logged"
    secrets = {
        "JWT_SECRET": SECRET,
        "ADMIN_API_KEY": ADMIN_KEY,
        "OPERATOR_API_KEY": OPERATOR_KEY,
        **{f"a credential sent ({v[:8]}...)": v for v in SENT if len(v) >= 16},
    }
    for name, value in secrets.items():
        for file, text in logs.items():
            assert value not in text, f"{name} is in {file}"
        for text in secured.seen.texts:
            assert value not in text, f"{name} is in an answer: {text[:300]}"
