"""Internal HTTP API: inspect sagas, and the operator actions on them (admin key)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from saga_orchestrator import gateway, services, stream, views
from saga_orchestrator.console import router as console_router
from saga_orchestrator.dlq_api import router as dlq_router
from saga_orchestrator.domain import SagaConflict, SagaStatus, Step
from saga_orchestrator.gateway import router as gateway_router
from shared_domain.auth import OPERATOR, AdminDep
from shared_domain.contracts import STORABLE, Storable
from shared_domain.http import MAX_PAGE, ApiError, JsonResponse, NotFound, envelope
from shared_domain.openapi import errors
from shared_domain.runtime import RuntimeDep

# Reading sagas is the operator's; what changes them, the admin's (AdminDep).
sagas = APIRouter(tags=["sagas"], dependencies=[OPERATOR])


class CompensateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Storable = Field(
        "forced by an operator", min_length=1, max_length=500, json_schema_extra=STORABLE
    )


@sagas.get("/sagas")
async def list_sagas(
    request: Request,
    rt: RuntimeDep,
    status: SagaStatus | None = None,
    step: Annotated[Step | None, Query(description="the step a saga is at now")] = None,
    q: Annotated[UUID | None, Query(description="a saga id, an order id or a customer id")] = None,
    page: int = Query(1, ge=1, le=MAX_PAGE),
    page_size: int = Query(20, ge=1, le=200),
) -> JsonResponse:
    items, total = await views.list_sagas(
        rt.engine,
        status.value if status else None,
        page_size,
        (page - 1) * page_size,
        step=step.value if step else None,
        search=q,
    )
    return envelope(
        request,
        data={"items": items, "total": total, "page": page, "page_size": page_size},
        message=f"{len(items)} of {total} saga(s)",
    )


_STREAM_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Server-Sent Events: `transition` events (id TXID-ID), then `end` "
        "when one saga's stream ends",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    }
}
LastEventId = Annotated[
    str | None,
    Header(
        alias="Last-Event-ID",
        description="resume after this event (the id of the last one received)",
    ),
]


def _position(last_event_id: str | None) -> stream.Position | None:
    if last_event_id is None:
        return None
    try:
        return stream.Position.parse(last_event_id)
    except ValueError as exc:
        field = "header.Last-Event-ID"
        raise ApiError(
            422,
            "validation_error",
            f"Invalid request: {field}: {exc}",
            [{"field": field, "message": str(exc), "type": "value_error"}],
        ) from None


def _sse(body: AsyncIterator[bytes]) -> StreamingResponse:
    return StreamingResponse(
        body,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@sagas.get("/sagas/stream", response_class=StreamingResponse, responses=_STREAM_RESPONSES)
async def stream_sagas(rt: RuntimeDep, last_event_id: LastEventId = None) -> StreamingResponse:
    """Every saga's transitions from now on (or after `Last-Event-ID`), live."""
    return _sse(stream.events(rt, _position(last_event_id)))


@sagas.get("/sagas/{saga_id}/stream", response_class=StreamingResponse, responses=_STREAM_RESPONSES)
async def stream_saga(
    saga_id: UUID, rt: RuntimeDep, last_event_id: LastEventId = None
) -> StreamingResponse:
    """One saga's transitions from its start (or after `Last-Event-ID`), live; the
    stream ends with an `end` event once the saga is terminal."""
    after = _position(last_event_id)
    if not await views.saga_exists(rt.engine, saga_id):
        raise NotFound("saga", saga_id)
    return _sse(stream.events(rt, after, saga_id))


@sagas.get("/sagas/{saga_id}")
async def get_saga(saga_id: UUID, request: Request, rt: RuntimeDep) -> JsonResponse:
    saga = await views.get_saga(rt.engine, saga_id)
    if saga is None:
        raise NotFound("saga", saga_id)
    return envelope(request, data=saga, message="saga found")


@sagas.get("/sagas/{saga_id}/holdings")
async def saga_holdings(saga_id: UUID, request: Request, rt: RuntimeDep) -> JsonResponse:
    """What each service holds for the saga's order, from the services' own APIs."""
    saga = await views.get_saga(rt.engine, saga_id)
    if saga is None:
        raise NotFound("saga", saga_id)
    found = await gateway.holdings(rt, saga["order_id"], request)
    missing = ", ".join(found["errors"]) or "none"
    return envelope(request, data=found, message=f"what the services hold; unanswered: {missing}")


@sagas.post("/sagas/{saga_id}/retry", status_code=202, responses=errors(409))
async def retry_saga(
    saga_id: UUID, request: Request, rt: RuntimeDep, actor: AdminDep
) -> JsonResponse:
    try:
        saga = await services.retry_saga(rt, saga_id, actor)
    except services.SagaNotFound:
        raise NotFound("saga", saga_id) from None
    except SagaConflict as exc:
        raise ApiError(409, "saga_state_conflict", f"cannot retry saga {saga_id}: {exc}") from None
    view = await views.get_saga(rt.engine, saga_id)
    return envelope(
        request,
        data=view,
        status_code=202,
        message=f"saga {saga_id} resumed, now {saga.status}",
    )


@sagas.post("/sagas/{saga_id}/compensate", status_code=202, responses=errors(409))
async def compensate_saga(
    saga_id: UUID,
    request: Request,
    rt: RuntimeDep,
    actor: AdminDep,
    body: CompensateRequest | None = None,
) -> JsonResponse:
    reason = (body or CompensateRequest()).reason
    try:
        await services.compensate_saga(rt, saga_id, actor, reason)
    except services.SagaNotFound:
        raise NotFound("saga", saga_id) from None
    except SagaConflict as exc:
        raise ApiError(
            409, "saga_state_conflict", f"cannot compensate saga {saga_id}: {exc}"
        ) from None
    view = await views.get_saga(rt.engine, saga_id)
    return envelope(
        request, data=view, status_code=202, message=f"saga {saga_id} is being compensated"
    )


router = APIRouter()
for part in (sagas, dlq_router, console_router, gateway_router):
    router.include_router(part)
