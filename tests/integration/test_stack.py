"""The process supervisor against a real service: start, restart with env, stop, failure."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from scripts.run_local import free_connections
from scripts.stack import HEALTH_PATH, REPO_ROOT, Stack, StackError
from shared_domain import pg
from shared_domain.settings import ServiceSettings

pytestmark = pytest.mark.integration

SERVICE = "inventory_service"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


def process_env(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    pairs = (item.decode(errors="replace").partition("=") for item in raw.split(b"\0") if item)
    return {key: value for key, _, value in pairs}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def vhost() -> Iterator[str]:
    if shutil.which("rabbitmqctl") is None:
        pytest.skip("rabbitmqctl is not installed")
    name = f"stacktest_{secrets.token_hex(4)}"
    rabbitmqctl("add_vhost", name)
    try:
        rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
        yield name
    finally:
        rabbitmqctl("delete_vhost", name)


@pytest.fixture
async def db_prefix() -> AsyncIterator[str]:
    prefix = f"stacktest_{secrets.token_hex(4)}_"
    yield prefix
    settings = ServiceSettings(_env_file=REPO_ROOT / ".env")
    conn = await pg.connect(settings, "postgres", connect_timeout=5)
    try:
        names = await conn.fetch(
            "SELECT datname FROM pg_database WHERE starts_with(datname, $1)", prefix
        )
        for row in names:
            await conn.execute(f'DROP DATABASE IF EXISTS "{row["datname"]}" WITH (FORCE)')
    finally:
        await conn.close()


async def test_start_restart_stop(vhost: str, db_prefix: str, tmp_path: Path) -> None:
    stack = Stack(
        env={"RABBITMQ_VHOST": vhost},
        ports={SERVICE: free_port()},
        db_prefix=db_prefix,
        log_dir=tmp_path,
    )
    try:
        await stack.start([SERVICE], timeout=90)
        first = stack.pid(SERVICE)
        assert first is not None
        env = process_env(first)
        assert env["DB_NAME"] == f"{db_prefix}inventory_db"
        assert env["RABBITMQ_VHOST"] == vhost
        assert env["PYTHONUNBUFFERED"] == "1"

        async with httpx.AsyncClient(base_url=stack.url(SERVICE), timeout=10) as client:
            response = await client.get("/api/v1/products")
            assert response.status_code == 200, response.text
            assert len(response.json()["data"]) == 5

            await stack.restart(SERVICE, env={"OUTBOX_SWEEP_INTERVAL": "0.3"}, timeout=90)
            second = stack.pid(SERVICE)
            assert second is not None and second != first
            assert not alive(first)
            assert process_env(second)["OUTBOX_SWEEP_INTERVAL"] == "0.3"
            assert (await client.get(HEALTH_PATH)).status_code == 200

            # The override stays with the service across a plain restart.
            await stack.restart(SERVICE, timeout=90)
            third = stack.pid(SERVICE)
            assert third is not None and third != second
            assert process_env(third)["OUTBOX_SWEEP_INTERVAL"] == "0.3"
            assert (await client.get(HEALTH_PATH)).status_code == 200

        await stack.stop()
        assert stack.pid(SERVICE) is None
        assert not alive(third)
        await stack.stop()  # idempotent

        assert stack.output(SERVICE), "the service's output was captured"
        log = (tmp_path / f"{SERVICE}.log").read_text()
        assert "migrated" in log
    finally:
        await stack.stop()


async def failed_start(env: dict[str, str], db_prefix: str) -> StackError:
    """Start SERVICE with `env`, which must keep it from starting: the error, once the
    stack has no process left."""
    stack = Stack(
        env=env | {"STARTUP_TIMEOUT": "2"}, ports={SERVICE: free_port()}, db_prefix=db_prefix
    )
    try:
        with pytest.raises(StackError) as caught:
            await stack.start([SERVICE], timeout=60)
        assert stack.pid(SERVICE) is None
        assert stack.services == []
        return caught.value
    finally:
        await stack.stop()


async def test_start_fails_when_postgres_is_unreachable(db_prefix: str) -> None:
    error = await failed_start({"DB_PORT": "1"}, db_prefix)
    assert error.service == SERVICE
    assert SERVICE in str(error)
    assert "before it became healthy" in str(error)
    assert error.lines, "the error quotes the service's last output lines"


async def test_start_fails_when_rabbitmq_is_unreachable_saying_why_without_a_traceback(
    db_prefix: str,
) -> None:
    said = "\n".join((await failed_start({"RABBITMQ_PORT": "1"}, db_prefix)).lines)
    assert f"{SERVICE}: cannot reach RabbitMQ at 127.0.0.1:1" in said, said
    assert "rabbitmq-server -detached" in said
    assert "Traceback" not in said and "SystemExit" not in said, said
    assert "Application startup failed. Exiting." in said


async def test_replicas_run_side_by_side_and_die_alone(vhost: str, db_prefix: str) -> None:
    stack = Stack(
        env={"RABBITMQ_VHOST": vhost},
        ports={SERVICE: free_port()},
        db_prefix=db_prefix,
        replicas={SERVICE: 3},
    )
    try:
        await stack.start([SERVICE], timeout=90)
        names = stack.instances(SERVICE)
        assert names == [SERVICE, f"{SERVICE}#2", f"{SERVICE}#3"]
        pids = {stack.pid(n) for n in names}
        assert None not in pids and len(pids) == 3
        assert len({stack.port(n) for n in names}) == 3
        assert {process_env(p)["DB_NAME"] for p in pids if p} == {f"{db_prefix}inventory_db"}
        assert process_env(stack.pid(f"{SERVICE}#2") or 0)["INSTANCE_NAME"] == f"{SERVICE}#2"

        stack.kill(f"{SERVICE}#2")
        killed, code = await stack.wait_exit([f"{SERVICE}#2"])
        assert (killed, code) == (f"{SERVICE}#2", -9)
        assert stack.running(SERVICE) and stack.running(f"{SERVICE}#3")
        async with httpx.AsyncClient(timeout=10) as client:
            for name in (SERVICE, f"{SERVICE}#3"):
                assert (await client.get(stack.url(name) + HEALTH_PATH)).status_code == 200

        await stack.start([f"{SERVICE}#2"], timeout=90)  # brought back alone
        assert stack.running(f"{SERVICE}#2")
        with pytest.raises(ValueError, match="no replica"):
            stack.pid(f"{SERVICE}#4")
    finally:
        await stack.stop()
    assert stack.services == []


async def test_the_runner_counts_the_connections_postgres_still_accepts() -> None:
    settings = ServiceSettings(_env_file=REPO_ROOT / ".env")
    for _ in range(5):  # another client may connect or leave meanwhile: take a quiet moment
        before = await free_connections(settings)
        held = [await pg.connect(settings, "postgres", connect_timeout=5) for _ in range(3)]
        try:
            during = await free_connections(settings)
        finally:
            for conn in held:
                await conn.close()
        if during == before - 3:
            break
    assert 0 < during == before - 3
