from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Request

from inventory_service import repository
from shared_domain.http import JsonResponse, NotFound, envelope
from shared_domain.runtime import RuntimeDep

router = APIRouter(tags=["inventory"])


@router.get("/products")
async def list_products(request: Request, rt: RuntimeDep) -> JsonResponse:
    items = await repository.list_products(rt.engine)
    return envelope(request, data=items, message=f"{len(items)} product(s)")


@router.get("/products/{product_id}")
async def get_product(product_id: UUID, request: Request, rt: RuntimeDep) -> JsonResponse:
    product = await repository.get_product(rt.engine, product_id)
    if product is None:
        raise NotFound("product", product_id)
    return envelope(request, data=product, message="product found")


@router.get("/orders/{order_id}/reservation")
async def get_reservation(order_id: UUID, request: Request, rt: RuntimeDep) -> JsonResponse:
    reservation = await repository.reservation_for_order(rt.engine, order_id)
    if reservation is None:
        raise NotFound("reservation for order", order_id)
    data = {
        "id": reservation.id,
        "order_id": reservation.order_id,
        "status": reservation.status,
        "items": [{"product_id": k, "quantity": v} for k, v in reservation.items.items()],
        "failure_reason": reservation.failure_reason,
        "failure_detail": reservation.failure_detail,
        "created_at": reservation.created_at,
        "updated_at": reservation.updated_at,
    }
    return envelope(request, data=data, message="reservation found")
