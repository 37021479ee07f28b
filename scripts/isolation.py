"""Running beside someone else's stack: a RabbitMQ vhost and database names of one's
own, created and removed again. Used by the tests and the benchmark."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
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


async def drop_databases(prefix: str, connections: int = 4) -> None:
    """Drop every database named with `prefix`, a few at a time (a test run leaves
    dozens, and each drop mostly waits on the file system)."""
    conn = await asyncpg.connect(database="postgres", **PG)
    try:
        names = [
            row["datname"]
            for row in await conn.fetch(
                "SELECT datname FROM pg_database WHERE datname LIKE $1",
                prefix.replace("_", r"\_") + "%",
            )
        ]
    finally:
        await conn.close()

    async def drop(share: list[str]) -> None:
        own = await asyncpg.connect(database="postgres", **PG)
        try:
            for name in share:
                await own.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await own.close()

    shares = [names[i::connections] for i in range(connections)]
    await asyncio.gather(*(drop(share) for share in shares if share))


def drop_databases_sync(prefix: str) -> None:
    asyncio.run(drop_databases(prefix))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
