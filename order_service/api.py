from __future__ import annotations

import logging
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Header, Query, Request

from order_service import services, views
from order_service.schemas import PlaceOrder
from order_service.settings import Settings
from shared_domain.auth import CallerDep
from shared_domain.http import MAX_PAGE, ApiError, JsonResponse, NotFound, envelope, request_id
from shared_domain.openapi import errors
from shared_domain.rate_limits import RateLimit
from shared_domain.runtime import Runtime, RuntimeDep

log = logging.getLogger(__name__)
router = APIRouter(tags=["orders"])


def _rate_limit(rt: Runtime[Settings]) -> RateLimit | None:
    """The process's limit on POST /orders (ORDER_RATE_LIMIT), made on first use."""
    if rt.settings.order_rate_limit is None:
        return None
    limit: RateLimit | None = rt.components.get(RateLimit)
    if limit is None:
        limit = rt.components[RateLimit] = RateLimit(rt.settings.order_rate_limit, "orders")
    return limit


@router.post("/orders", status_code=201, responses=errors(409, 429))
async def place_order(
    body: PlaceOrder,
    request: Request,
    rt: RuntimeDep,
    caller: CallerDep,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> JsonResponse:
    if not caller.acts_for(body.customer_id):
        log.warning(
            "order for customer %s refused: %s has the %s role",
            body.customer_id,
            caller.subject,
            caller.role,
        )
        raise ApiError(
            403,
            "forbidden",
            f"a {caller.role} may not place an order for customer {body.customer_id}"
            + (": a customer orders for themselves only" if caller.role == "customer" else ""),
        )
    limit = _rate_limit(rt)
    if limit is not None:
        if rt.settings.order_rate_limit_by == "customer":
            await limit.take(str(body.customer_id), f"customer {body.customer_id}")
        else:
            client = request.client.host if request.client else "unknown"
            await limit.take(client, f"client {client}")
    try:
        order, created = await services.place_order(rt, body, idempotency_key, request_id(request))
    except services.IdempotencyConflict as exc:
        raise ApiError(
            409,
            "idempotency_conflict",
            f"Idempotency-Key {exc} was already used with a different request",
        ) from exc
    return envelope(
        request,
        data=views.order_view(order),
        message="Order created" if created else "Order already created with this Idempotency-Key",
        status_code=201,
        headers=None if created else {"Idempotent-Replayed": "true"},
    )


@router.get("/orders/{order_id}")
async def get_order(
    order_id: UUID, request: Request, rt: RuntimeDep, caller: CallerDep
) -> JsonResponse:
    order = await views.order_with_history(rt.engine, order_id)
    # Another customer's order is not found: not even whether it exists is told.
    if order is None or not caller.owns(order["customer_id"]):
        raise NotFound("order", order_id)
    return envelope(request, data=order, message="order found")


@router.get("/customers/{customer_id}/orders")
async def customer_orders(
    customer_id: UUID,
    request: Request,
    rt: RuntimeDep,
    caller: CallerDep,
    page: int = Query(1, ge=1, le=MAX_PAGE),
    page_size: int = Query(20, ge=1, le=100),
) -> JsonResponse:
    if not caller.owns(customer_id):
        raise NotFound("customer", customer_id)
    items, total = await views.customer_orders(
        rt.engine, customer_id, page_size, (page - 1) * page_size
    )
    return envelope(
        request,
        data={"items": items, "total": total, "page": page, "page_size": page_size},
        message=f"{len(items)} of {total} order(s)",
    )
