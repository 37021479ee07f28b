"""The console's way to the other services: `/api/v1/services/{service}/{path}` is
passed on to that service's `/api/v1/{path}` (and `.../metrics` to its `/metrics`),
with the admin key and the actor, so a browser that reaches the orchestrator reaches
them all, in docker compose too."""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any
from uuid import UUID

import httpx
from fastapi import APIRouter, Request, Response

from shared_domain.auth import PUBLIC
from shared_domain.http import ApiError, request_id
from shared_domain.runtime import Runtime, RuntimeDep

log = logging.getLogger(__name__)
# Open itself: the service behind it checks the credentials passed on.
router = APIRouter(prefix="/services", tags=["console"], dependencies=[PUBLIC])

TIMEOUT = 10.0
# What a request passes on, and what comes back (the body's own headers).
_FORWARDED = (
    "content-type",
    "authorization",
    "x-admin-key",
    "x-admin-actor",
    "idempotency-key",
    "accept",
)
_RETURNED = ("content-type", "retry-after", "x-request-id")
_PATH = re.compile(r"[A-Za-z0-9_\-./]*")


def _client(rt: Runtime[Any]) -> httpx.AsyncClient:
    client: httpx.AsyncClient | None = rt.components.get(httpx.AsyncClient)
    if client is None:
        client = rt.components[httpx.AsyncClient] = httpx.AsyncClient(timeout=TIMEOUT)
        rt.on_stop(client.aclose)
    return client


# Not in the OpenAPI description: it answers whatever the service behind it answers, and
# docs/api.md describes it.
@router.api_route(
    "/{service}/{path:path}", methods=["GET", "POST", "PUT", "DELETE"], include_in_schema=False
)
async def forward(service: str, path: str, request: Request, rt: RuntimeDep) -> Response:
    urls = rt.settings.service_urls()
    base = urls.get(service)
    if base is None:
        raise ApiError(404, "not_found", f"no service {service!r}; known: {', '.join(urls)}")
    if not _PATH.fullmatch(path) or ".." in path.split("/"):
        raise ApiError(404, "not_found", f"no such path {path!r}")
    url = f"{base}/metrics" if path == "metrics" else f"{base}/api/v1/{path}"
    headers = {k: v for k, v in request.headers.items() if k.lower() in _FORWARDED}
    headers["X-Request-ID"] = request_id(request)
    try:
        answer = await _client(rt).request(
            request.method,
            url,
            params=request.query_params,
            headers=headers,
            content=await request.body(),
        )
    except httpx.HTTPError as exc:
        log.warning("gateway: %s %s failed: %s", request.method, url, exc)
        raise ApiError(
            503,
            "service_unavailable",
            f"{service} at {base} does not answer: {type(exc).__name__}: {exc}",
        ) from None
    kept = {k: v for k, v in answer.headers.items() if k.lower() in _RETURNED}
    return Response(answer.content, status_code=answer.status_code, headers=kept)


# What each service holds for an order, and where it says so.
HOLDINGS = {
    "order": ("order_service", "/orders/{order_id}"),
    "payment": ("payment_service", "/orders/{order_id}/payment"),
    "reservation": ("inventory_service", "/orders/{order_id}/reservation"),
    "shipment": ("shipping_service", "/orders/{order_id}/shipment"),
    "notifications": ("notification_service", "/orders/{order_id}/notifications"),
}


async def holdings(rt: Runtime[Any], order_id: UUID, request: Request) -> dict[str, Any]:
    """Each service's record of the order from its own API, asked with the caller's
    credentials: the record, None where it has none, and under `errors` the services
    that could not say."""
    urls = rt.settings.service_urls()
    client = _client(rt)
    headers = {k: v for k, v in request.headers.items() if k.lower() == "authorization"}

    async def one(name: str, service: str, path: str) -> tuple[str, Any, str | None]:
        url = f"{urls[service]}/api/v1{path.format(order_id=order_id)}"
        try:
            answer = await client.get(url, headers=headers)
        except httpx.HTTPError as exc:
            return name, None, f"{service} does not answer: {type(exc).__name__}: {exc}"
        if answer.status_code == 404:
            return name, None, None
        if answer.status_code != 200:
            return name, None, f"{service} answered {answer.status_code}"
        return name, answer.json()["data"], None

    found = await asyncio.gather(*(one(n, s, p) for n, (s, p) in HOLDINGS.items()))
    result: dict[str, Any] = {name: value for name, value, _ in found}
    result["errors"] = {name: error for name, _, error in found if error}
    return result
