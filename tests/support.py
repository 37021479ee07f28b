"""Test isolation: every run gets its own RabbitMQ vhost and its own database names,
so it neither disturbs nor is disturbed by a stack someone is running locally."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import uuid
from urllib.parse import quote

import asyncpg
import httpx

PG = {
    "host": os.environ.get("DB_HOST", "127.0.0.1"),
    "port": int(os.environ.get("DB_PORT", "5432")),
    "user": os.environ.get("DB_USER", "postgres"),
    "password": os.environ.get("DB_PASSWORD", "postgres"),
}
RABBIT_USER = os.environ.get("RABBITMQ_USERNAME", "guest")
RABBIT_PASSWORD = os.environ.get("RABBITMQ_PASSWORD", "guest")
MANAGEMENT_URL = os.environ.get("RABBITMQ_MANAGEMENT_URL", "http://127.0.0.1:15672")

RUN_ID = uuid.uuid4().hex[:8]

# The seeded catalogue, as the stacks under test start with it.
TERMINAL = {"completed", "cancelled", "failed"}
LAPTOP = "550e8400-e29b-41d4-a716-446655440001"
MOUSE = "550e8400-e29b-41d4-a716-446655440002"
HUB = "550e8400-e29b-41d4-a716-446655440003"
KEYBOARD = "550e8400-e29b-41d4-a716-446655440004"
MONITOR = "550e8400-e29b-41d4-a716-446655440005"
PRICES = {LAPTOP: "1299.99", MOUSE: "49.99", HUB: "79.99", KEYBOARD: "159.99", MONITOR: "299.99"}
INITIAL_STOCK = {LAPTOP: 50, MOUSE: 100, HUB: 75, KEYBOARD: 30, MONITOR: 25}
ADDRESS = {
    "street": "1 Main St",
    "city": "Springfield",
    "state": "IL",
    "zip_code": "62701",
    "country": "US",
}
# Every command routing key: a poison message goes to each.
POISON_KEYS = [
    "payment.process",
    "payment.refund",
    "inventory.reserve",
    "inventory.release",
    "shipping.create",
    "shipping.cancel",
    "notification.send",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_env(vhost: str) -> dict[str, str]:
    """Environment for a service under test: isolated vhost, quick retries."""
    return {
        "RABBITMQ_VHOST": vhost,
        "RETRY_BASE_DELAY": "0.05",
        "RETRY_MAX_DELAY": "1",
        "OUTBOX_SWEEP_INTERVAL": "0.2",
        "OUTBOX_GRACE_PERIOD": "1",
        "LOG_LEVEL": "INFO",
    }


def _api(method: str, path: str, body: dict[str, str] | None = None) -> None:
    response = httpx.request(
        method,
        f"{MANAGEMENT_URL}/api{path}",
        json=body,
        timeout=10,
        auth=(RABBIT_USER, RABBIT_PASSWORD),
    )
    if response.status_code >= 300 and not (method == "DELETE" and response.status_code == 404):
        response.raise_for_status()


def _rabbitmqctl(*args: str) -> None:
    if shutil.which("rabbitmqctl") is None:
        raise RuntimeError(
            "cannot manage test vhosts: neither the RabbitMQ management API at "
            f"{MANAGEMENT_URL} nor rabbitmqctl is available"
        )
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


def create_vhost(name: str) -> None:
    q = quote(name, safe="")
    try:
        _api("PUT", f"/vhosts/{q}")
        _api(
            "PUT",
            f"/permissions/{q}/{quote(RABBIT_USER, safe='')}",
            {"configure": ".*", "write": ".*", "read": ".*"},
        )
    except httpx.TransportError:
        _rabbitmqctl("add_vhost", name)
        _rabbitmqctl("set_permissions", "-p", name, RABBIT_USER, ".*", ".*", ".*")


def delete_vhost(name: str) -> None:
    try:
        _api("DELETE", f"/vhosts/{quote(name, safe='')}")
    except httpx.TransportError:
        _rabbitmqctl("delete_vhost", name)


async def drop_databases(prefix: str) -> None:
    conn = await asyncpg.connect(database="postgres", **PG)
    try:
        names = await conn.fetch(
            "SELECT datname FROM pg_database WHERE datname LIKE $1",
            prefix.replace("_", r"\_") + "%",
        )
        for row in names:
            await conn.execute(f'DROP DATABASE IF EXISTS "{row["datname"]}" WITH (FORCE)')
    finally:
        await conn.close()


def drop_databases_sync(prefix: str) -> None:
    asyncio.run(drop_databases(prefix))
