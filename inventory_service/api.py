from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator

from inventory_service import services, views
from inventory_service.domain import StockConflict
from shared_domain.auth import AdminDep, CallerDep
from shared_domain.contracts import WholeNumber
from shared_domain.http import ApiError, JsonResponse, NotFound, envelope
from shared_domain.openapi import errors
from shared_domain.runtime import RuntimeDep

router = APIRouter(tags=["inventory"])
MAX_CHANGE = 100_000_000  # units in one change


@router.get("/products")
async def list_products(request: Request, rt: RuntimeDep, _: CallerDep) -> JsonResponse:
    items = await views.list_products(rt.engine)
    return envelope(request, data=items, message=f"{len(items)} product(s)")


@router.get("/products/{product_id}")
async def get_product(
    product_id: UUID, request: Request, rt: RuntimeDep, _: CallerDep
) -> JsonResponse:
    product = await views.product(rt.engine, product_id)
    if product is None:
        raise NotFound("product", product_id)
    return envelope(request, data=product, message="product found")


@router.get("/orders/{order_id}/reservation")
async def get_reservation(
    order_id: UUID, request: Request, rt: RuntimeDep, caller: CallerDep
) -> JsonResponse:
    reservation = await views.reservation_for_order(rt.engine, order_id)
    if reservation is None or not caller.owns(reservation["customer_id"]):
        raise NotFound("reservation for order", order_id)
    return envelope(request, data=reservation, message="reservation found")


class StockChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    quantity: WholeNumber = Field(
        ge=-MAX_CHANGE,
        le=MAX_CHANGE,
        description="units to add to what is available (negative: to take away); not 0",
        json_schema_extra={"not": {"const": 0}},
    )

    @field_validator("quantity")
    @classmethod
    def _not_zero(cls, value: int) -> int:
        if value == 0:
            raise ValueError("must not be 0")
        return value


@router.post("/products/{product_id}/stock", responses=errors(409))
async def add_stock(
    product_id: UUID, body: StockChange, request: Request, rt: RuntimeDep, actor: AdminDep
) -> JsonResponse:
    try:
        product, before = await services.add_stock(rt, product_id, body.quantity, actor)
    except services.ProductNotFound:
        raise NotFound("product", product_id) from None
    except StockConflict as exc:
        raise ApiError(409, "stock_conflict", str(exc)) from None
    view = await views.product(rt.engine, product_id)
    return envelope(
        request,
        data=view,
        message=f"product {product.id}: {before} -> {product.stock} available",
    )
