"""What a client sends to place an order."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated
from uuid import UUID

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

from shared_domain.contracts import Address, WholeNumber

# A unit price: a JSON string, positive, at most 999999.99, two decimals at most. The
# pattern is the whole rule, so the API's description and the service agree on every
# value (a number, "", "0.00" or "01" is refused by both).
PRICE_PATTERN = r"^(?:[1-9][0-9]{0,5}(?:\.[0-9]{1,2})?|0\.(?:[1-9][0-9]?|0[1-9]))$"
_PRICE = re.compile(PRICE_PATTERN)
MAX_QUANTITY = 1_000
MAX_ITEMS = 100


def _price_text(value: object) -> object:
    if not isinstance(value, str) or not _PRICE.match(value):
        raise ValueError(
            'must be a string amount like "49.99": positive, at most 999999.99, '
            "two decimals at most"
        )
    return value


Price = Annotated[
    Decimal,
    BeforeValidator(_price_text),
    WithJsonSchema({"type": "string", "pattern": PRICE_PATTERN, "examples": ["49.99"]}),
]


class OrderItemIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    product_id: UUID
    quantity: WholeNumber = Field(gt=0, le=MAX_QUANTITY)
    price: Price


# The largest amount Money (14 digits, 2 decimals) can carry. The limits above keep every
# order's total within it (100 lines of 1000 units at 999999.99 is 99999999000.00), so no
# body the API's description accepts is refused for its total.
MAX_TOTAL = Decimal("999999999999.99")


class PlaceOrder(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customer_id: UUID
    items: list[OrderItemIn] = Field(min_length=1, max_length=MAX_ITEMS)
    shipping_address: Address
