"""What a client sends to place an order."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared_domain.contracts import Address


class OrderItemIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    product_id: UUID
    quantity: int = Field(gt=0, le=1_000_000)
    price: Annotated[Decimal, Field(gt=0, max_digits=12, decimal_places=2)]


# The largest amount Money (14 digits, 2 decimals) can carry.
MAX_TOTAL = Decimal("999999999999.99")


class PlaceOrder(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customer_id: UUID
    items: list[OrderItemIn] = Field(min_length=1, max_length=100)
    shipping_address: Address

    @model_validator(mode="after")
    def total_fits(self) -> PlaceOrder:
        total = sum((i.price * i.quantity for i in self.items), Decimal(0))
        if total > MAX_TOTAL:
            raise ValueError(f"order total {total} exceeds the maximum of {MAX_TOTAL}")
        return self
