"""Internal HTTP API: inspect sagas, and the operator actions on them (admin key)."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from saga_orchestrator import services, views
from saga_orchestrator.admin import AdminDep
from saga_orchestrator.dlq_api import router as dlq_router
from saga_orchestrator.domain import SagaConflict, SagaStatus
from shared_domain.http import ApiError, JsonResponse, NotFound, envelope
from shared_domain.runtime import RuntimeDep

router = APIRouter(tags=["sagas"])


class CompensateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field("forced by an operator", min_length=1, max_length=500)


@router.get("/sagas")
async def list_sagas(
    request: Request,
    rt: RuntimeDep,
    status: SagaStatus | None = None,
    page: int = Query(1, ge=1),
    page_size: int = Query(20, ge=1, le=200),
) -> JsonResponse:
    items, total = await views.list_sagas(
        rt.engine, status.value if status else None, page_size, (page - 1) * page_size
    )
    return envelope(
        request,
        data={"items": items, "total": total, "page": page, "page_size": page_size},
        message=f"{len(items)} of {total} saga(s)",
    )


@router.get("/sagas/{saga_id}")
async def get_saga(saga_id: UUID, request: Request, rt: RuntimeDep) -> JsonResponse:
    saga = await views.get_saga(rt.engine, saga_id)
    if saga is None:
        raise NotFound("saga", saga_id)
    return envelope(request, data=saga, message="saga found")


@router.post("/sagas/{saga_id}/retry", status_code=202)
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


@router.post("/sagas/{saga_id}/compensate", status_code=202)
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


@router.get("/admin/audit", tags=["admin"])
async def audit_log(
    request: Request, rt: RuntimeDep, limit: int = Query(50, ge=1, le=1000)
) -> JsonResponse:
    entries = await views.list_audit(rt.engine, limit)
    return envelope(request, data=entries, message=f"{len(entries)} audit entr(ies), newest first")


router.include_router(dlq_router)
