"""Admin actions, the same in every service: the key check their routes depend on, and
the audit log every one of them writes (in the service's own database, in the
transaction of what it changed)."""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import BigInteger, Column, DateTime, Index, MetaData, String, Table, Text, select
from sqlalchemy.ext.asyncio import AsyncEngine

from shared_domain import failure_rates
from shared_domain.contracts import utcnow
from shared_domain.failure_rates import FailureRate, FailureRates
from shared_domain.http import ApiError, JsonResponse, envelope, request_id
from shared_domain.views import fetch_all

if TYPE_CHECKING:
    from shared_domain.db import Connection
    from shared_domain.runtime import Runtime

log = logging.getLogger(__name__)

ADMIN_KEY_HEADER = "X-Admin-Key"
ACTOR_HEADER = "X-Admin-Actor"  # optional: who is acting, for the audit log


@dataclass(frozen=True)
class Actor:
    """Who asks, for the audit log."""

    name: str
    address: str
    request_id: str | None

    def __str__(self) -> str:
        return f"{self.name} from {self.address}"


def define_audit_table(metadata: MetaData) -> Table:
    """Who did what through the admin API, and how it ended."""
    return Table(
        "admin_audit",
        metadata,
        Column("id", BigInteger, primary_key=True, autoincrement=True),
        Column("at", DateTime(timezone=True), nullable=False),
        Column("action", String(50), nullable=False),
        Column("target", String(200), nullable=False),
        Column("actor", String(200), nullable=False),
        Column("outcome", String(20), nullable=False),
        Column("detail", Text, nullable=True),
        Column("request_id", String(100), nullable=True),
        Index("ix_admin_audit_at", "at"),
    )


_AUDIT = (
    "INSERT INTO admin_audit (at, action, target, actor, outcome, detail, request_id) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7)"
)


async def record(
    conn: Connection, action: str, target: str, actor: Actor, outcome: str, detail: str | None
) -> None:
    """Write the audit entry on `conn` (so it commits or rolls back with the change it
    describes), and log it."""
    log.warning(
        "admin %s %s by %s: %s%s", action, target, actor, outcome, f" ({detail})" if detail else ""
    )
    at: datetime = utcnow()
    await conn.execute(
        _AUDIT, at, action, target, str(actor)[:200], outcome, detail, actor.request_id
    )


async def audit(
    rt: Runtime[Any], action: str, target: str, actor: Actor, outcome: str, detail: str | None
) -> None:
    """An audit entry on its own (for an outcome that changes nothing in the database)."""
    async with rt.uow() as uow:
        await record(uow.conn, action, target, actor, outcome, detail)
        await uow.commit()


async def list_audit(engine: AsyncEngine, limit: int) -> list[dict[str, Any]]:
    table = define_audit_table(MetaData())
    return await fetch_all(engine, select(table).order_by(table.c.id.desc()).limit(limit))


def _runtime(request: Request) -> Runtime[Any]:
    # shared_domain.runtime.runtime_of, which cannot be imported here: the runtime imports
    # this module to mount its routers.
    runtime: Runtime[Any] = request.app.state.runtime
    return runtime


async def require_admin(
    request: Request,
    # Declared, so that the API's description names the header on every admin action.
    _key: Annotated[
        str | None, Header(alias=ADMIN_KEY_HEADER, description="the admin key (ADMIN_API_KEY)")
    ] = None,
    _actor: Annotated[
        str | None, Header(alias=ACTOR_HEADER, description="who acts, for the audit log")
    ] = None,
) -> Actor:
    rt = _runtime(request)
    address = request.client.host if request.client else "unknown"
    configured = rt.settings.admin_api_key
    if configured is None:
        where = rt.definition.title.lower().removeprefix("saga ")
        raise ApiError(
            403,
            "admin_disabled",
            f"admin operations are disabled: set ADMIN_API_KEY on the {where} to enable them",
        )
    given = request.headers.get(ADMIN_KEY_HEADER)
    if not given:
        raise ApiError(
            403, "admin_key_required", f"this admin operation needs the {ADMIN_KEY_HEADER} header"
        )
    if not hmac.compare_digest(given.encode(), configured.get_secret_value().encode()):
        log.warning(
            "admin request %s %s from %s refused: wrong key",
            request.method,
            request.url.path,
            address,
        )
        raise ApiError(403, "admin_key_invalid", f"the {ADMIN_KEY_HEADER} given is not valid")
    name = (request.headers.get(ACTOR_HEADER) or "admin").strip()[:100] or "admin"
    return Actor(name=name, address=address, request_id=request_id(request))


AdminDep = Annotated[Actor, Depends(require_admin)]

audit_router = APIRouter(tags=["admin"])


@audit_router.get("/admin/status")
async def admin_status(request: Request) -> JsonResponse:
    """Whether admin actions are on here, and whether the X-Admin-Key sent (if any) is
    the right one: what a client needs to know before it offers them."""
    rt = _runtime(request)
    try:
        await require_admin(request)
    except ApiError as exc:
        on = exc.code != "admin_disabled"
        given = request.headers.get(ADMIN_KEY_HEADER) is not None
        data: dict[str, Any] = {"enabled": on, "key_valid": False if (on and given) else None}
        return envelope(request, data={**data, "message": exc.message}, message=exc.message)
    message = f"admin actions are enabled on {rt.name}, and the key is valid"
    data = {"enabled": True, "key_valid": True, "message": message}
    return envelope(request, data=data, message=message)


@audit_router.get("/admin/audit")
async def audit_log(request: Request, limit: int = Query(50, ge=1, le=1000)) -> JsonResponse:
    entries = await list_audit(_runtime(request).engine, limit)
    return envelope(request, data=entries, message=f"{len(entries)} audit entr(ies), newest first")


class FailureRateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rate: float = Field(ge=0.0, le=1.0, description="probability (0.0-1.0) that the work fails")


failure_rates_router = APIRouter(prefix="/admin/failure-rates", tags=["admin"])


def _rates(rt: Runtime[Any]) -> FailureRates:
    if rt.failure_rates is None:  # the router is mounted only where there are knobs
        raise ApiError(404, "not_found", f"{rt.name} has no failure rates")
    return rt.failure_rates


async def _knob(rt: Runtime[Any], name: str, actor: Actor) -> FailureRate:
    rates = _rates(rt)
    if name not in rates.knobs:
        await audit(rt, "failure_rate.set", f"failure rate {name}"[:200], actor, "not_found", None)
        raise ApiError(
            404,
            "not_found",
            f"no failure rate named {name!r} here; {rt.name} has: {', '.join(rates.knobs)}",
        )
    return rates[name]


@failure_rates_router.get("")
async def list_failure_rates(request: Request) -> JsonResponse:
    rates = _rates(_runtime(request))
    return envelope(request, data=rates.view(), message=f"{len(rates.knobs)} failure rate(s)")


async def _change(request: Request, name: str, rate: float | None, actor: Actor) -> JsonResponse:
    rt = _runtime(request)
    knob = await _knob(rt, name, actor)
    before = knob.value
    async with rt.uow() as uow:
        await failure_rates.store(uow.conn, name, rate, str(actor))
        now = knob.default if rate is None else rate
        how = "environment's value" if rate is None else "set"
        await record(
            uow.conn,
            "failure_rate.set",
            f"failure rate {name}",
            actor,
            "done",
            f"{before} -> {now} ({how})",
        )
        await uow.commit()
    await failure_rates.load(rt)  # this replica at once; the others within a second
    view = next(v for v in _rates(rt).view() if v["name"] == name)
    return envelope(
        request,
        data=view,
        message=f"failure rate {name} is {view['rate']} on every replica within "
        f"{failure_rates.REFRESH_INTERVAL:g} s",
    )


@failure_rates_router.put("/{name}")
async def set_failure_rate(
    name: str, body: FailureRateRequest, request: Request, actor: AdminDep
) -> JsonResponse:
    return await _change(request, name, body.rate, actor)


@failure_rates_router.delete("/{name}")
async def reset_failure_rate(name: str, request: Request, actor: AdminDep) -> JsonResponse:
    """Back to the environment's value."""
    return await _change(request, name, None, actor)
