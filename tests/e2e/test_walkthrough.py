"""The README's walkthrough, run against the end-to-end stack, so the README cannot drift
from the code.

Every shell block under `## Walkthrough` runs, in order, in one bash process (shell
variables carry over from block to block), with the README's `http://localhost:800N`
URLs pointed at the stack. A block that starts the stack (`make run`,
`scripts/run-local.sh`) is not run: the failure rates it sets are applied to the running
stack instead (the knobs it does not name go back to 0). The output shown after a block
is compared by what does not change from run to run: its HTTP status lines, and its
`"status"` and `"success"` values (ids, times and stock figures are not compared, and the
README may leave parts out with `…`)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

import asyncpg
import pytest

from scripts.isolation import PG
from scripts.stack import DEFAULT_PORTS
from tests.docs_support import (
    README,
    REPO_ROOT,
    Step,
    failure_rates,
    mismatches,
    ordered_products,
    rewrite_urls,
    walkthrough,
)
from tests.e2e.conftest import ADMIN_KEY, Api

pytestmark = pytest.mark.e2e

SHELL_TIMEOUT = 120.0  # seconds for all the blocks together (restarts not counted)
RESTOCK = 1000  # units added to every product the walkthrough orders, for its duration
SHOWN = 4000  # characters of expected and actual output quoted per failing block
REFUND_KNOB = "PAYMENT_REFUND_FAILURE_RATE"


class ShellError(AssertionError):
    pass


class Shell:
    """One bash process fed block after block on its stdin. After each block it prints a
    marker line; the output up to the marker is the block's (stderr merged in)."""

    def __init__(self, env: Mapping[str, str], cwd: Path) -> None:
        self._env = dict(env)
        self._cwd = cwd
        self._process: asyncio.subprocess.Process | None = None
        self._count = 0
        self._token = uuid.uuid4().hex

    async def __aenter__(self) -> Self:
        self._process = await asyncio.create_subprocess_exec(
            "bash",
            "--noprofile",
            "--norc",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            cwd=self._cwd,
            env=self._env,
            start_new_session=True,  # its own process group: nothing it starts outlives it
            limit=1 << 24,
        )
        await self._write("exec 2>&1\nset +e\nset +o pipefail\n")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        process = self._process
        if process is None:
            return
        self._process = None
        try:
            if process.returncode is None and process.stdin is not None:
                with contextlib.suppress(OSError):
                    process.stdin.write(b"exit 0\n")
                    process.stdin.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), 5)
        finally:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()

    async def _write(self, text: str) -> None:
        assert self._process is not None and self._process.stdin is not None
        self._process.stdin.write(text.encode())
        await self._process.stdin.drain()

    async def run(self, command: str, timeout: float) -> str:
        """Run the block (its stdin is /dev/null: it cannot eat the blocks after it) and
        return what it printed."""
        assert self._process is not None and self._process.stdout is not None
        self._count += 1
        marker = f"__walkthrough_block_{self._count}_{self._token}__"
        await self._write(f"{{\n{command}\n}} </dev/null\nprintf '\\n%s\\n' '{marker}'\n")
        lines: list[str] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            try:
                raw = await asyncio.wait_for(
                    self._process.stdout.readline(), max(deadline - loop.time(), 0)
                )
            except TimeoutError:
                raise ShellError(
                    f"no end after {timeout:.0f} s; output so far:\n{''.join(lines)}"
                ) from None
            if not raw:
                raise ShellError(f"bash exited; output so far:\n{''.join(lines)}")
            line = raw.decode(errors="replace")
            if line.rstrip("\r\n") == marker:
                break
            lines.append(line)
        output = "".join(lines)
        return output[:-1] if output.endswith("\n") else output  # printf's leading newline


async def apply_rates(api: Api, rates: Mapping[str, float]) -> None:
    """Give the stack these failure rates, restarting only the services they change."""
    await api.failure_rates(
        payment=rates["payment"], shipping=rates["shipping"], notification=rates["notification"]
    )
    current = float(api.env.get("payment_service", {}).get(REFUND_KNOB, "0"))
    if current != rates["refund"]:
        value = str(rates["refund"])
        await api.stack.restart("payment_service", {REFUND_KNOB: value})
        api.env.setdefault("payment_service", {})[REFUND_KNOB] = value


@contextlib.asynccontextmanager
async def restocked(api: Api, products: Sequence[str]) -> AsyncIterator[None]:
    """RESTOCK more units of each product while the block runs (earlier tests may have
    sold them out), taken away again afterwards."""
    ids = [uuid.UUID(p) for p in products]
    conn = await asyncpg.connect(database=api.stack.database("inventory_service"), **PG)
    try:
        status = await conn.execute(
            "UPDATE products SET stock = stock + $1 WHERE id = ANY($2::uuid[])", RESTOCK, ids
        )
        assert status == f"UPDATE {len(ids)}", f"not every product {products} exists: {status}"
        try:
            yield
        finally:
            await conn.execute(
                "UPDATE products SET stock = GREATEST(stock - $1, 0) WHERE id = ANY($2::uuid[])",
                RESTOCK,
                ids,
            )
    finally:
        await conn.close()


def shell_env(api: Api) -> dict[str, str]:
    """This environment, with this interpreter's directory first on PATH (`python3` for
    the blocks' JSON handling, `sagactl`) and the stack's orchestrator and admin key for
    `sagactl`; no proxy for the local URLs."""
    env = dict(os.environ)
    env.pop("BASH_ENV", None)
    env.pop("ENV", None)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env["SAGA_ADMIN_URL"] = api.stack.url("saga_orchestrator")
    env["ADMIN_API_KEY"] = ADMIN_KEY
    return env


def report(step: Step, problems: Sequence[str], actual: str) -> str:
    def cut(text: str) -> str:
        return text if len(text) <= SHOWN else text[:SHOWN] + "\n[… cut]"

    return "\n".join(
        [
            f"{README.name}:{step.line}: block `{step.title}`:",
            *(f"  {problem}" for problem in problems),
            "--- expected (README) ---",
            cut(step.expected or ""),
            "--- actual ---",
            cut(actual.replace("\r", "")),
        ]
    )


async def test_the_readme_walkthrough_returns_what_it_shows(api: Api) -> None:
    plan = walkthrough(README)
    assert any(s.restart is None for s in plan), "README.md's walkthrough runs no command"
    urls = {port: api.stack.url(service) for service, port in DEFAULT_PORTS.items()}
    products = ordered_products([s.command for s in plan if s.restart is None])
    failures: list[str] = []
    budget = SHELL_TIMEOUT
    loop = asyncio.get_running_loop()
    try:
        await apply_rates(api, failure_rates({}))  # `make run` with its defaults
        async with restocked(api, products), Shell(shell_env(api), REPO_ROOT) as shell:
            for step in plan:
                if step.restart is not None:
                    await apply_rates(api, failure_rates(step.restart))
                    continue
                started = loop.time()
                try:
                    actual = await shell.run(rewrite_urls(step.command, urls), budget)
                except ShellError as error:
                    failures.append(report(step, [str(error).splitlines()[0]], str(error)))
                    break
                budget -= loop.time() - started
                if step.expected is not None:
                    problems = mismatches(step.expected, actual)
                    if problems:
                        failures.append(report(step, problems, actual))
    finally:
        await apply_rates(api, failure_rates({}))
    assert not failures, (
        f"{len(failures)} block(s) of the README walkthrough did not return what it shows:\n\n"
        + "\n\n".join(failures)
    )
