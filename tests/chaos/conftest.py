"""A stack of its own for the chaos scenarios, in each saga style: every service in
replicas, an isolated vhost and databases, short step timeouts (orchestration) or a
short saga deadline (choreography). The summary of every scenario is printed at the end
of the run."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from scripts.isolation import create_vhost, delete_vhost, free_port
from scripts.stack import SERVICES, Stack
from shared_domain.choreography import CHOREOGRAPHY, ORCHESTRATION
from tests.chaos.harness import ADMIN_KEY, LONG, REPLICAS, RESULTS, Chaos, EventTap
from tests.support import test_env

# CHAOS_SAGA_MODE=orchestration|choreography runs one style only (make chaos ARGS=...).
STYLES = [m for m in (ORCHESTRATION, CHOREOGRAPHY) if os.environ.get("CHAOS_SAGA_MODE", m) == m]


# One style at a time: its stack is stopped before the next one's starts.
@pytest.fixture(scope="module", params=STYLES)
async def chaos(
    request: pytest.FixtureRequest,
    vhost: str,
    db_prefix: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Chaos]:
    mode: str = request.param
    chaos_vhost = f"{vhost}_chaos_{mode}"
    log_dir: Path = tmp_path_factory.mktemp(f"chaos-{mode}-logs")
    env = {
        **test_env(chaos_vhost),
        "SAGA_MODE": mode,
        # choreography: a saga stuck this long is unwound by the order service. Every
        # fault and the backlog after it are over well within it, so each saga still
        # ends on its own (the long run's 30 s memory alarm leaves about 40 s of
        # backlog: a deadline of 60 s unwound hundreds of sagas after it).
        "SAGA_DEADLINE_SECONDS": "180" if LONG else "20",
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
        db_prefix=f"{db_prefix}chaos_{mode}_",
        log_dir=log_dir,
        replicas=dict.fromkeys(SERVICES, REPLICAS),
    )
    create_vhost(chaos_vhost)
    async with httpx.AsyncClient(timeout=15) as client:
        try:
            await stack.start(timeout=180)
            async with EventTap(chaos_vhost) as tap:
                yield Chaos(stack, client, chaos_vhost, mode, tap)
        finally:
            await stack.stop()
            delete_vhost(chaos_vhost)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not RESULTS:
        return
    mode = "long" if LONG else "short"
    write = terminalreporter.write_line
    terminalreporter.section(f"chaos results ({mode} run, {REPLICAS} replicas of each service)")
    header = (
        f"{'style':<15}{'scenario':<34}{'placed':>7}{'terminal':>9}{'lost':>5}{'dup':>5}"
        f"{'recover s':>10}  outcomes"
    )
    write(header)
    write("-" * len(header))
    for r in RESULTS:
        outcomes = ", ".join(f"{k} {v}" for k, v in sorted(r.outcomes.items()))
        write(
            f"{r.style:<15}{r.scenario:<34}{r.placed:>7}{r.terminal:>9}{r.lost:>5}{r.duplicated:>5}"
            f"{r.recover_seconds:>10.1f}  {outcomes}{'  ' + r.notes if r.notes else ''}"
        )
    total = sum(r.placed for r in RESULTS)
    write(
        f"{len(RESULTS)} scenario(s), {total} orders placed, "
        f"{sum(r.lost for r in RESULTS)} lost, {sum(r.duplicated for r in RESULTS)} duplicated"
    )
