"""Use cases the API invokes: open a unit of work, load, call the domain, save, audit,
commit."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from inventory_service import domain, repository
from inventory_service.domain import Product, StockConflict
from inventory_service.settings import Settings
from shared_domain import admin
from shared_domain.auth import Actor
from shared_domain.runtime import Runtime


class ProductNotFound(Exception):
    pass


async def add_stock(
    rt: Runtime[Settings], product_id: UUID, quantity: int, actor: Actor
) -> tuple[Product, int]:
    """Returns the product as saved and its stock before. The product's row lock (the
    one reservations take, in id order) orders this against every reservation and
    release, so none of them can work on a stale count."""
    action, target = "stock.add", f"product {product_id}"
    async with rt.uow() as uow:
        product = (await repository.products_for_update(uow.conn, [product_id])).get(product_id)
        outcome: tuple[str, Any] = ("not_found", None)
        if product is not None:
            before = product.stock
            try:
                domain.add_stock(product, quantity)
            except StockConflict as exc:
                outcome = ("conflict", str(exc))
            else:
                await repository.save_stock(uow.conn, product)
                outcome = ("done", f"{quantity:+d}: {before} -> {product.stock} available")
        await admin.record(uow.conn, action, target, actor, *outcome)
        await uow.commit()
    if product is None:
        raise ProductNotFound(product_id)
    if outcome[0] == "conflict":
        raise StockConflict(outcome[1])
    return product, before
