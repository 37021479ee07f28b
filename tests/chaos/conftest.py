"""A stack of its own for the chaos scenarios: every service in replicas, an isolated
vhost and databases, short step timeouts. The summary of every scenario is printed at
the end of the run."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from scripts.isolation import create_vhost, delete_vhost, free_port
from scripts.stack import SERVICES, Stack
from tests.chaos.harness import ADMIN_KEY, LONG, REPLICAS, RESULTS, Chaos
from tests.support import test_env


@pytest.fixture(scope="session")
def chaos_vhost(vhost: str) -> Iterator[str]:
    name = f"{vhost}_chaos"
    create_vhost(name)
    yield name
    delete_vhost(name)


@pytest.fixture(scope="module")  # gone before the other suites need PostgreSQL's connections
async def chaos(
    chaos_vhost: str, db_prefix: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Chaos]:
    log_dir: Path = tmp_path_factory.mktemp("chaos-logs")
    env = {
        **test_env(chaos_vhost),
        # the seed's chaos rates
        "PAYMENT_FAILURE_RATE": "0.1",
        "SHIPPING_FAILURE_RATE": "0.05",
        "NOTIFICATION_FAILURE_RATE": "0.02",
        "NOTIFICATION_RETRY_DELAY": "0.01",
        "ADMIN_API_KEY": ADMIN_KEY,
        "COMPENSATION_RETRY_DELAY": "0.1",
        # a command lost with a killed process is re-sent quickly
        "PAYMENT_STEP_TIMEOUT": "3",
        "INVENTORY_STEP_TIMEOUT": "3",
        "SHIPPING_STEP_TIMEOUT": "3",
        "NOTIFICATION_STEP_TIMEOUT": "5",
        "STEP_MAX_ATTEMPTS": "6",
        "STEP_RESEND_MAX_WAIT": "10",
        "TIMEOUT_CHECK_INTERVAL": "0.5",
        "DB_POOL_SIZE": "3",
        "DB_READ_POOL_SIZE": "2",
        "LOG_LEVEL": "WARNING",
    }
    stack = Stack(
        env=env,
        ports={s: free_port() for s in SERVICES},
        db_prefix=f"{db_prefix}chaos_",
        log_dir=log_dir,
        replicas=dict.fromkeys(SERVICES, REPLICAS),
    )
    async with httpx.AsyncClient(timeout=15) as client:
        try:
            await stack.start(timeout=180)
            yield Chaos(stack, client, chaos_vhost)
        finally:
            await stack.stop()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not RESULTS:
        return
    mode = "long" if LONG else "short"
    write = terminalreporter.write_line
    terminalreporter.section(f"chaos results ({mode} run, {REPLICAS} replicas of each service)")
    header = (
        f"{'scenario':<34}{'placed':>7}{'terminal':>9}{'lost':>5}{'dup':>5}"
        f"{'recover s':>10}  outcomes"
    )
    write(header)
    write("-" * len(header))
    for r in RESULTS:
        outcomes = ", ".join(f"{k} {v}" for k, v in sorted(r.outcomes.items()))
        write(
            f"{r.scenario:<34}{r.placed:>7}{r.terminal:>9}{r.lost:>5}{r.duplicated:>5}"
            f"{r.recover_seconds:>10.1f}  {outcomes}{'  ' + r.notes if r.notes else ''}"
        )
    total = sum(r.placed for r in RESULTS)
    write(
        f"{len(RESULTS)} scenario(s), {total} orders placed, "
        f"{sum(r.lost for r in RESULTS)} lost, {sum(r.duplicated for r in RESULTS)} duplicated"
    )
