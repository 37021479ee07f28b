"""Liveness, readiness and a detailed health check of the database and the broker."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from shared_domain.auth import PUBLIC
from shared_domain.breaker import Breaker
from shared_domain.http import JsonResponse, envelope, error_response

Check = Callable[[], Awaitable[dict[str, Any]]]


def database_check(engine: AsyncEngine, where: str) -> Check:
    async def check() -> dict[str, Any]:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(2.0), engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception as exc:
            return {"status": "down", "target": where, "error": f"{type(exc).__name__}: {exc}"}
        return {
            "status": "up",
            "target": where,
            "latency_ms": round((time.perf_counter() - started) * 1000, 2),
        }

    return check


def broker_check(
    is_connected: Callable[[], bool], blocked_for: Callable[[], float | None], where: str
) -> Check:
    """`up`, `down`, or `blocked`: connected, but RabbitMQ reads nothing from the
    connection until its resource alarm clears. Blocked still counts as ready: what the
    service commits waits in its outbox, and an order is still answered at once."""

    async def check() -> dict[str, Any]:
        if not is_connected():
            return {"status": "down", "target": where, "error": "not connected"}
        seconds = blocked_for()
        if seconds is not None:
            return {
                "status": "blocked",
                "target": where,
                "blocked_seconds": round(seconds, 1),
                "error": "RabbitMQ blocked the connection (a memory or disk alarm)",
            }
        return {"status": "up", "target": where}

    return check


def breaker_check(breaker: Breaker) -> Check:
    """A provider's circuit breaker: `up` while closed, else `open` or `half_open`,
    which still count as ready (the work waits in the retry queue)."""

    async def check() -> dict[str, Any]:
        return breaker.detail()

    return check


# Statuses a service still works with: a blocked broker, an open provider breaker.
SERVING = frozenset({"up", "blocked", "open", "half_open"})


async def _run(checks: dict[str, Check]) -> tuple[bool, dict[str, Any]]:
    results = await asyncio.gather(*(c() for c in checks.values()))
    detail = dict(zip(checks, results, strict=True))
    return all(r["status"] in SERVING for r in results), detail


_WAITS = {
    "blocked": "blocked: messages wait in the outbox",
    "open": "breaker open: calls wait in the retry queue",
    "half_open": "breaker half open: a probe is on its way",
}


def _degraded(detail: dict[str, Any]) -> str:
    parts = [f"{k} {_WAITS[v['status']]}" for k, v in detail.items() if v["status"] in _WAITS]
    return f" ({'; '.join(parts)})" if parts else ""


def health_router(service: str, checks: Callable[[Request], dict[str, Check]]) -> APIRouter:
    router = APIRouter(prefix="/health", tags=["health"], dependencies=[PUBLIC])

    @router.get("")
    async def health(request: Request) -> JsonResponse:
        healthy, detail = await _run(checks(request))
        degraded = _degraded(detail)
        data = {
            "service": service,
            "status": ("degraded" if degraded else "healthy") if healthy else "unhealthy",
            "dependencies": detail,
        }
        if healthy:
            return envelope(request, data=data, message=f"{service} is {data['status']}{degraded}")
        down = ", ".join(k for k, v in detail.items() if v["status"] not in SERVING)
        return error_response(
            request, 503, "service_unavailable", f"{service} is unhealthy: {down} unreachable", data
        )

    @router.get("/live")
    async def live(request: Request) -> JsonResponse:
        return envelope(
            request, data={"service": service, "status": "alive"}, message=f"{service} is alive"
        )

    @router.get("/ready")
    async def ready(request: Request) -> JsonResponse:
        healthy, detail = await _run(checks(request))
        data = {
            "service": service,
            "status": "ready" if healthy else "not_ready",
            "dependencies": {k: v["status"] for k, v in detail.items()},
        }
        if healthy:
            message = f"{service} is ready{_degraded(detail)}"
            return envelope(request, data=data, message=message)
        return error_response(request, 503, "service_unavailable", f"{service} is not ready", data)

    return router
