"""Admin actions, the same in every service: the audit log every one of them writes (in
the service's own database, in the transaction of what it changed), and the status a
client asks before it offers them."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import BigInteger, Column, DateTime, Index, MetaData, String, Table, Text, select
from sqlalchemy.ext.asyncio import AsyncEngine

from shared_domain import failure_rates
from shared_domain.auth import (
    ADMIN_KEY_HEADER,
    OPERATOR,
    PUBLIC,
    Actor,
    AdminDep,
    Role,
    admin_actor,
    auth_of,
)
from shared_domain.contracts import utcnow
from shared_domain.failure_rates import FailureRate, FailureRates
from shared_domain.http import ApiError, JsonResponse, envelope
from shared_domain.views import fetch_all

if TYPE_CHECKING:
    from shared_domain.db import Connection
    from shared_domain.runtime import Runtime

log = logging.getLogger(__name__)


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


audit_router = APIRouter(tags=["admin"])


@audit_router.get("/admin/status", dependencies=[PUBLIC])
async def admin_status(request: Request) -> JsonResponse:
    """How this process checks who asks (`auth_mode`), who the credentials sent are
    (`role`, `subject`; null without any), and whether they allow admin actions: what a
    client needs to know before it offers them."""
    rt = _runtime(request)
    auth = auth_of(request)
    data: dict[str, Any] = {"auth_mode": auth.mode, "role": None, "subject": None}
    try:
        admin_actor(request, quiet=True)
    except ApiError as exc:
        on = exc.code != "admin_disabled"
        given = bool(request.headers.get(ADMIN_KEY_HEADER) or request.headers.get("authorization"))
        valid = False if (on and given) else None
        if auth.mode != "none" and exc.code == "forbidden":
            principal = auth.identify(request, quiet=True)  # known: only the role is short
            data |= {"role": principal.role, "subject": principal.subject}
            valid = True
        data |= {"enabled": on, "key_valid": valid, "admin": False, "message": exc.message}
        return envelope(request, data=data, message=exc.message)
    if auth.mode == "none":
        data |= {"role": Role.ADMIN, "subject": "admin key"}
    else:
        principal = auth.identify(request)
        data |= {"role": principal.role, "subject": principal.subject}
    message = f"admin actions are enabled on {rt.name}, and the credentials allow them"
    data |= {"enabled": True, "key_valid": True, "admin": True, "message": message}
    return envelope(request, data=data, message=message)


@audit_router.get("/admin/audit", dependencies=[OPERATOR])
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


@failure_rates_router.get("", dependencies=[OPERATOR])
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
