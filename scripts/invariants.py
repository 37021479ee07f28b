"""The consistency checks a finished run must pass, as a client can see them through the
services' public APIs. Used by the chaos tests and by the benchmark."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from saga_orchestrator.domain import REPEATABLE

TERMINAL = frozenset({"completed", "cancelled", "failed"})

# GET a service's `/api/v1{path}` and return its `data`, or None on a 404.
Read = Callable[[str, str], Awaitable[Any]]


async def customer_orders(read: Read, customer: str) -> list[dict[str, Any]]:
    """Every order of a customer, page by page."""
    orders: list[dict[str, Any]] = []
    page = 1
    while True:
        data = await read(
            "order_service", f"/customers/{customer}/orders?page={page}&page_size=100"
        )
        orders += data["items"]
        if len(orders) >= data["total"] or not data["items"]:
            return orders
        page += 1


@dataclass
class Audit:
    problems: list[str] = field(default_factory=list)
    doubled: list[str] = field(default_factory=list)  # sagas that did a step twice
    # history entries of repeated attempts, by status: re-sent, overdue (a deadline passed
    # while the command was queued, no copy sent), compensation retry
    attempts: Counter[str] = field(default_factory=Counter)


async def audit_orders(
    read: Read, orders: list[dict[str, Any]], concurrency: int = 8, observed: bool = True
) -> Audit:
    """Per order: fully served when completed, nothing kept when cancelled, and no saga
    step done twice. `observed`: the orchestrator keeps the sagas (not so in choreography
    with SAGA_OBSERVER off: then only the services' records are checked)."""
    audit = Audit()
    gate = asyncio.Semaphore(concurrency)

    async def one(order: dict[str, Any]) -> None:
        async with gate:
            oid = order["id"]
            payment = await read("payment_service", f"/orders/{oid}/payment")
            reservation = await read("inventory_service", f"/orders/{oid}/reservation")
            shipment = await read("shipping_service", f"/orders/{oid}/shipment")
            saga = (
                await read("saga_orchestrator", f"/sagas/{order['saga_id']}") if observed else None
            )
        audit.problems.extend(
            f"order {oid}: {p}"
            for p in _order_problems(order, payment, reservation, shipment, saga, observed)
        )
        seen = Counter((h["step"], h["status"]) for h in saga["history"]) if saga else Counter()
        for (_, status), n in seen.items():
            if status in REPEATABLE:
                audit.attempts[status] += n
        # attempts (re-sends, deadlines passed while queued, compensation retries) repeat
        twice = {k: n for k, n in seen.items() if n > 1 and k[1] not in REPEATABLE}
        if twice:
            audit.doubled.append(f"saga {order['saga_id']}: {twice}")

    await asyncio.gather(*(one(o) for o in orders))
    return audit


def _order_problems(
    order: dict[str, Any],
    payment: Any,
    reservation: Any,
    shipment: Any,
    saga: Any,
    observed: bool = True,
) -> Iterable[str]:
    status = order["status"]
    if status not in TERMINAL:
        yield f"not terminal ({status})"
        return
    if saga is None:
        if observed:
            yield "has no saga"
            return
    elif saga["status"] != status:
        yield f"saga is {saga['status']}, order is {status}"
    if status == "completed":
        if payment is None or payment["status"] != "completed":
            yield "completed without a completed payment"
        elif Decimal(payment["amount"]) != Decimal(order["total_amount"]):
            yield f"charged {payment['amount']} for a total of {order['total_amount']}"
        if reservation is None or reservation["status"] != "reserved":
            yield "completed without a reservation"
        if shipment is None or shipment["status"] != "created":
            yield "completed without a shipment"
    elif status == "cancelled":
        if payment is not None and payment["status"] not in ("failed", "refunded"):
            yield f"cancelled but payment is {payment['status']}"
        if reservation is not None and reservation["status"] == "reserved":
            yield "cancelled but stock still reserved"
        if shipment is not None and shipment["status"] == "created":
            yield "cancelled but a shipment is still created"
    else:
        yield f"failed: {order.get('failure_reason')}"


def stock_problems(
    products: list[dict[str, Any]],
    orders: list[dict[str, Any]],
    supplied: Mapping[str, int],
    reserved_before: Mapping[str, int] | None = None,
) -> list[str]:
    """Stock is conserved and never negative: for each product, what is on the shelf plus
    what completed orders hold equals what was supplied; and what is reserved is exactly
    what they hold. `orders` must be every order that touched these products since
    `supplied` was counted (with `reserved_before` the units reserved at that moment)."""
    held: Counter[str] = Counter()
    problems = []
    for order in orders:
        if order["status"] not in TERMINAL:
            problems.append(f"order {order['id']} is not terminal ({order['status']})")
        if order["status"] == "completed":
            for item in order["items"]:
                held[item["product_id"]] += item["quantity"]
    before = reserved_before or {}
    for p in products:
        pid = p["id"]
        if p["stock"] < 0:
            problems.append(f"product {pid}: negative stock {p['stock']}")
        if p["stock"] + held[pid] != supplied[pid]:
            problems.append(
                f"product {pid}: stock not conserved ({p['stock']} on the shelf + "
                f"{held[pid]} sold != {supplied[pid]} supplied)"
            )
        if p["reserved"] - before.get(pid, 0) != held[pid]:
            problems.append(
                f"product {pid}: {p['reserved'] - before.get(pid, 0)} reserved, "
                f"completed orders hold {held[pid]}"
            )
    return problems
