"""What a client sends to place an order."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from shared_domain.contracts import Address


class OrderItemIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    product_id: UUID
    quantity: int = Field(gt=0, le=1_000_000)
    price: Annotated[Decimal, Field(gt=0, max_digits=12, decimal_places=2)]


class PlaceOrder(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customer_id: UUID
    items: list[OrderItemIn] = Field(min_length=1, max_length=100)
    shipping_address: Address
