"""Internal HTTP API: inspect sagas."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Query, Request

from saga_orchestrator import repository
from saga_orchestrator.domain import SagaStatus
from shared_domain.http import JsonResponse, NotFound, envelope
from shared_domain.runtime import RuntimeDep

router = APIRouter(tags=["sagas"])


@router.get("/sagas")
async def list_sagas(
    request: Request,
    rt: RuntimeDep,
    status: SagaStatus | None = None,
    page: int = Query(1, ge=1),
    page_size: int = Query(20, ge=1, le=200),
) -> JsonResponse:
    items, total = await repository.list_sagas(
        rt.engine, status.value if status else None, page_size, (page - 1) * page_size
    )
    return envelope(
        request,
        data={"items": items, "total": total, "page": page, "page_size": page_size},
        message=f"{len(items)} of {total} saga(s)",
    )


@router.get("/sagas/{saga_id}")
async def get_saga(saga_id: UUID, request: Request, rt: RuntimeDep) -> JsonResponse:
    saga = await repository.get_saga(rt.engine, saga_id)
    if saga is None:
        raise NotFound("saga", saga_id)
    return envelope(request, data=saga, message="saga found")
