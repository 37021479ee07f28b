from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Request

from payment_service import views
from shared_domain.auth import CallerDep
from shared_domain.http import JsonResponse, NotFound, envelope
from shared_domain.runtime import RuntimeDep

router = APIRouter(tags=["payments"])


@router.get("/orders/{order_id}/payment")
async def get_payment(
    order_id: UUID, request: Request, rt: RuntimeDep, caller: CallerDep
) -> JsonResponse:
    payment = await views.payment_for_order(rt.engine, order_id)
    if payment is None or not caller.owns(payment["customer_id"]):
        raise NotFound("payment for order", order_id)
    return envelope(request, data=payment, message="payment found")
