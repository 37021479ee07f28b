"""The infrastructure's own ceiling on this machine, measured from one Python process
with the same durability the services use:

- RabbitMQ: persistent messages published with confirms to a durable queue and consumed
  with manual acks, all at once, with a bounded number of unconfirmed publishes, through
  the bare AMQP client (aiormq) on the services' event loop (uvloop);
- PostgreSQL: small committed transactions (two inserts each), `fsync` and
  `synchronous_commit` as the server has them.

What the system uses per saga is read from the servers themselves: messages published
in the stack's vhost (management API) and transactions committed in its databases
(`pg_stat_database`)."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from urllib.parse import quote

import aiormq
import aiormq.abc
import asyncpg
import httpx

from scripts.isolation import MANAGEMENT_URL, PG, RABBIT_PASSWORD, RABBIT_USER

WINDOW = 256  # unconfirmed publishes in flight
WORKERS = 8  # PostgreSQL connections committing at once
PERSISTENT = 2  # AMQP delivery mode


@dataclass(frozen=True)
class Ceiling:
    rabbit_messages_per_s: float
    postgres_tx_per_s: float


async def rabbit_ceiling(amqp_url: str, messages: int) -> float:
    # aiormq, the AMQP client under aio-pika, without aio-pika's message objects: the
    # Python side should cost as little as it can, so that the figure is the broker's.
    connection = await aiormq.connect(amqp_url)
    try:
        publish_channel = await connection.channel(publisher_confirms=True)
        consume_channel = await connection.channel(publisher_confirms=False)
        await consume_channel.basic_qos(prefetch_count=WINDOW)
        name = f"calibration-{uuid.uuid4().hex[:8]}"
        await consume_channel.queue_declare(name, durable=True)
        done = asyncio.Event()
        consumed = 0

        async def on_message(message: aiormq.abc.DeliveredMessage) -> None:
            nonlocal consumed
            tag = message.delivery_tag
            if tag is None:
                raise RuntimeError("a delivery without a delivery tag")
            await consume_channel.basic_ack(tag)  # one by one, as the services ack
            consumed += 1
            if consumed == messages:
                done.set()

        await consume_channel.basic_consume(name, on_message, no_ack=False, consumer_tag=name)
        body = b'{"calibration": true, "padding": "' + b"x" * 400 + b'"}'
        gate = asyncio.Semaphore(WINDOW)

        async def publish(i: int) -> None:
            async with gate:
                confirmation = await publish_channel.basic_publish(
                    body,
                    routing_key=name,
                    properties=aiormq.spec.Basic.Properties(
                        message_id=str(i), delivery_mode=PERSISTENT
                    ),
                )
                if not isinstance(confirmation, aiormq.spec.Basic.Ack):
                    raise RuntimeError(f"calibration message {i} was not confirmed")

        started = time.monotonic()
        await asyncio.gather(*(publish(i) for i in range(messages)))
        await asyncio.wait_for(done.wait(), timeout=120)
        elapsed = time.monotonic() - started
        await consume_channel.basic_cancel(name)
        await consume_channel.queue_delete(name)
        return messages / elapsed
    finally:
        await connection.close()


async def postgres_ceiling(database: str, seconds: float) -> float:
    admin = await asyncpg.connect(database="postgres", **PG)
    try:
        await admin.execute(f'CREATE DATABASE "{database}"')
    finally:
        await admin.close()
    try:
        pool = await asyncpg.create_pool(
            database=database, min_size=WORKERS, max_size=WORKERS, **PG
        )
        async with pool.acquire() as conn:
            await conn.execute(
                "CREATE TABLE a (id uuid PRIMARY KEY, body text);"
                "CREATE TABLE b (id uuid PRIMARY KEY, body text)"
            )
        committed = 0
        stop_at = time.monotonic() + seconds

        async def worker() -> None:
            nonlocal committed
            async with pool.acquire() as conn:
                while time.monotonic() < stop_at:
                    async with conn.transaction():
                        await conn.execute("INSERT INTO a VALUES ($1, 'x')", uuid.uuid4())
                        await conn.execute("INSERT INTO b VALUES ($1, 'y')", uuid.uuid4())
                    committed += 1

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(WORKERS)))
        elapsed = time.monotonic() - started
        await pool.close()
        return committed / elapsed
    finally:
        admin = await asyncpg.connect(database="postgres", **PG)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        finally:
            await admin.close()


async def measure(amqp_url: str, scratch_database: str) -> Ceiling:
    rabbit = await rabbit_ceiling(amqp_url, messages=20_000)
    postgres = await postgres_ceiling(scratch_database, seconds=5.0)
    return Ceiling(rabbit, postgres)


async def message_counts(vhost: str) -> tuple[int, int] | None:
    """Messages published and delivered in the vhost so far, from the management API;
    None without it. (The API's figures lag by up to its statistics interval, 5 s by
    default.)"""
    try:
        async with httpx.AsyncClient(timeout=5) as client:
            response = await client.get(
                f"{MANAGEMENT_URL}/api/vhosts/{quote(vhost, safe='')}",
                auth=(RABBIT_USER, RABBIT_PASSWORD),
            )
    except httpx.TransportError:
        return None
    if response.status_code != 200:
        return None
    stats = response.json().get("message_stats") or {}
    return int(stats.get("publish", 0)), int(stats.get("deliver_get", 0))


async def settled_message_counts(vhost: str, within: float = 15.0) -> tuple[int, int] | None:
    """The vhost's publish and delivery counts once the management API has caught up
    (two equal readings a statistics interval apart)."""
    last = await message_counts(vhost)
    deadline = time.monotonic() + within
    while last is not None and time.monotonic() < deadline:
        await asyncio.sleep(5.5)
        now = await message_counts(vhost)
        if now == last:
            return now
        last = now
    return last


async def committed_transactions(databases: list[str]) -> int:
    conn = await asyncpg.connect(database="postgres", **PG)
    try:
        await conn.execute("SELECT pg_stat_clear_snapshot()")
        value = await conn.fetchval(
            "SELECT coalesce(sum(xact_commit), 0) FROM pg_stat_database WHERE datname = ANY($1)",
            databases,
        )
        return int(value)
    finally:
        await conn.close()


async def durability_settings() -> dict[str, str]:
    conn = await asyncpg.connect(database="postgres", **PG)
    try:
        rows = await conn.fetch(
            "SELECT name, setting FROM pg_settings WHERE name = ANY($1)",
            ["fsync", "synchronous_commit", "full_page_writes", "wal_sync_method"],
        )
        return {r["name"]: r["setting"] for r in rows}
    finally:
        await conn.close()
