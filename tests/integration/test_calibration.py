"""The benchmark's calibration against the real servers: it measures something, and
leaves no queue or database behind."""

from __future__ import annotations

from urllib.parse import quote

import asyncpg
import httpx
import pytest

from scripts.bench.calibrate import postgres_ceiling, rabbit_ceiling
from scripts.isolation import MANAGEMENT_URL, PG, RABBIT_PASSWORD, RABBIT_USER

pytestmark = pytest.mark.integration


def queues(vhost: str) -> list[str]:
    response = httpx.get(
        f"{MANAGEMENT_URL}/api/queues/{quote(vhost, safe='')}",
        auth=(RABBIT_USER, RABBIT_PASSWORD),
        timeout=10,
    )
    response.raise_for_status()
    return [q["name"] for q in response.json()]


async def test_rabbit_ceiling_confirms_and_consumes_every_message(vhost: str) -> None:
    rate = await rabbit_ceiling(f"amqp://guest:guest@127.0.0.1:5672/{vhost}", messages=500)

    assert rate > 0
    assert not [name for name in queues(vhost) if name.startswith("calibration-")]


async def test_postgres_ceiling_commits_and_drops_its_database(db_prefix: str) -> None:
    database = f"{db_prefix}calibration"

    rate = await postgres_ceiling(database, seconds=0.5)

    assert rate > 0
    conn = await asyncpg.connect(database="postgres", **PG)
    try:
        assert (
            await conn.fetchval("SELECT count(*) FROM pg_database WHERE datname = $1", database)
            == 0
        )
    finally:
        await conn.close()
