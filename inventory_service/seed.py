"""The catalogue every fresh installation starts with, loaded idempotently."""

from decimal import Decimal
from uuid import UUID

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from inventory_service.tables import products

SEED_PRODUCTS = [
    ("550e8400-e29b-41d4-a716-446655440001", "Laptop Pro 15", "1299.99", 50),
    ("550e8400-e29b-41d4-a716-446655440002", "Wireless Mouse", "49.99", 100),
    ("550e8400-e29b-41d4-a716-446655440003", "USB-C Hub", "79.99", 75),
    ("550e8400-e29b-41d4-a716-446655440004", "Mechanical Keyboard", "159.99", 30),
    ("550e8400-e29b-41d4-a716-446655440005", "Monitor 24 inch", "299.99", 25),
]


async def seed_products(conn: AsyncConnection) -> None:
    await conn.execute(
        insert(products)
        .values(
            [
                {
                    "id": UUID(pid),
                    "name": name,
                    "price": Decimal(price),
                    "stock": stock,
                    "reserved": 0,
                }
                for pid, name, price, stock in SEED_PRODUCTS
            ]
        )
        .on_conflict_do_nothing(index_elements=["id"])
    )
