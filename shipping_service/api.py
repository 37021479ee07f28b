from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Request

from shared_domain.auth import CallerDep
from shared_domain.http import JsonResponse, NotFound, envelope
from shared_domain.runtime import RuntimeDep
from shipping_service import views

router = APIRouter(tags=["shipments"])


@router.get("/orders/{order_id}/shipment")
async def get_shipment(
    order_id: UUID, request: Request, rt: RuntimeDep, caller: CallerDep
) -> JsonResponse:
    shipment = await views.shipment_for_order(rt.engine, order_id)
    if shipment is None or not caller.owns(shipment["customer_id"]):
        raise NotFound("shipment for order", order_id)
    return envelope(request, data=shipment, message="shipment found")
