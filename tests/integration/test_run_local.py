"""`make run` as a presenter uses it: without ADMIN_API_KEY it makes a key for the run
and prints the console's address with it; with --restart a service killed with -9
comes back on its own."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import httpx
import pytest

from scripts.isolation import free_port
from scripts.stack import HEALTH_PATH, REPO_ROOT

pytestmark = pytest.mark.integration


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(p) for p in (task / "children").read_text().split()]
    return found


async def read_until(stream: asyncio.StreamReader, pattern: str, seen: list[str]) -> str:
    while True:
        raw = await asyncio.wait_for(stream.readline(), 120)
        if not raw:
            raise AssertionError("the runner ended early:\n" + "".join(seen[-40:]))
        text = raw.decode(errors="replace")
        seen.append(text)
        if re.search(pattern, text):
            return text


async def test_the_runner_makes_a_key_prints_the_console_and_restarts_a_killed_service(
    vhost: str, db_prefix: str
) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "ADMIN_API_KEY"}
    runner = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "scripts.run_local",
        "--services",
        "saga_orchestrator",
        "--restart",
        "--env",
        f"ORCHESTRATOR_PORT={port}",
        "--db-prefix",  # the stack's own database, never a local run's
        f"{db_prefix}runner_",
        "--env",
        f"RABBITMQ_VHOST={vhost}",
        cwd=REPO_ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert runner.stdout is not None
    seen: list[str] = []
    try:
        console = await read_until(runner.stdout, r"^Console: ", seen)
        key_line = await read_until(runner.stdout, r"^Admin key made for this run", seen)
        await read_until(runner.stdout, r"All services healthy", seen)
        key = key_line.strip().rsplit("=", 1)[1]
        assert len(key) >= 12
        assert console.strip() == f"Console: http://127.0.0.1:{port}/console/?key={key}"
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(timeout=10) as client:
            status = (
                await client.get(f"{base}/api/v1/admin/status", headers={"X-Admin-Key": key})
            ).json()["data"]
            assert (status["enabled"], status["key_valid"]) == (True, True)
            page = await client.get(f"{base}/console/")
            assert page.status_code == 200 and "Order saga console" in page.text

            (orchestrator,) = children(runner.pid)
            os.kill(orchestrator, signal.SIGKILL)
            await read_until(
                runner.stdout, r"killed by SIGKILL unexpectedly; starting it again", seen
            )
            await read_until(runner.stdout, r"saga_orchestrator is back", seen)
            assert (await client.get(base + HEALTH_PATH)).status_code == 200
            assert children(runner.pid) != [orchestrator]
        runner.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(runner.wait(), 60) == 0
    finally:
        if runner.returncode is None:
            runner.kill()
            await runner.wait()
