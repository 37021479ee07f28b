from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Request

from notification_service import views
from shared_domain.http import JsonResponse, envelope
from shared_domain.runtime import RuntimeDep

router = APIRouter(tags=["notifications"])


@router.get("/orders/{order_id}/notifications")
async def list_notifications(order_id: UUID, request: Request, rt: RuntimeDep) -> JsonResponse:
    items = await views.notifications_for_order(rt.engine, order_id)
    return envelope(request, data=items, message=f"{len(items)} notification(s)")
