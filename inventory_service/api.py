from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Request

from inventory_service import views
from shared_domain.http import JsonResponse, NotFound, envelope
from shared_domain.runtime import RuntimeDep

router = APIRouter(tags=["inventory"])


@router.get("/products")
async def list_products(request: Request, rt: RuntimeDep) -> JsonResponse:
    items = await views.list_products(rt.engine)
    return envelope(request, data=items, message=f"{len(items)} product(s)")


@router.get("/products/{product_id}")
async def get_product(product_id: UUID, request: Request, rt: RuntimeDep) -> JsonResponse:
    product = await views.product(rt.engine, product_id)
    if product is None:
        raise NotFound("product", product_id)
    return envelope(request, data=product, message="product found")


@router.get("/orders/{order_id}/reservation")
async def get_reservation(order_id: UUID, request: Request, rt: RuntimeDep) -> JsonResponse:
    reservation = await views.reservation_for_order(rt.engine, order_id)
    if reservation is None:
        raise NotFound("reservation for order", order_id)
    return envelope(request, data=reservation, message="reservation found")
