"""An asyncio supervisor for the six service processes.

`Stack` starts each service as `python -m <package>` with its port and database name in
the environment, pumps its combined stdout/stderr line by line (kept in memory, optionally
written to `<log_dir>/<service>.log` and echoed with a `[service] ` prefix), and waits until
`GET /api/v1/health` answers 200. It is used by the local runner and by the end-to-end
tests::

    async with Stack(db_prefix="e2e_", env={"PAYMENT_FAILURE_RATE": "1"}) as stack:
        ...  # talk to stack.url("order_service")

Any service can run as several replicas (`replicas={"payment_service": 3}`), like
`docker compose up --scale`. Replica 1 is named after its service and listens on the
service's port; replica k is named `service#k` and gets a free port. Every method takes
either name: a plain service name means all of its replicas for `start`, `stop`,
`restart` and `kill`, and replica 1 for the queries (`url`, `pid`, ...).

The processes stay children of the caller. `stop()` always reaps them, and a caller that is
cancelled half-way through `start()` or `stop()` leaves nothing running behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections import defaultdict, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Self

import httpx

SERVICES: tuple[str, ...] = (
    "saga_orchestrator",
    "order_service",
    "payment_service",
    "inventory_service",
    "shipping_service",
    "notification_service",
)

PORT_ENV: dict[str, str] = {
    "saga_orchestrator": "ORCHESTRATOR_PORT",
    "order_service": "ORDER_SERVICE_PORT",
    "payment_service": "PAYMENT_SERVICE_PORT",
    "inventory_service": "INVENTORY_SERVICE_PORT",
    "shipping_service": "SHIPPING_SERVICE_PORT",
    "notification_service": "NOTIFICATION_SERVICE_PORT",
}

DEFAULT_PORTS: dict[str, int] = {
    "saga_orchestrator": 8000,
    "order_service": 8001,
    "payment_service": 8002,
    "inventory_service": 8003,
    "shipping_service": 8004,
    "notification_service": 8005,
}

DEFAULT_DB: dict[str, str] = {
    "saga_orchestrator": "orchestrator_db",
    "order_service": "order_db",
    "payment_service": "payment_db",
    "inventory_service": "inventory_db",
    "shipping_service": "shipping_db",
    "notification_service": "notification_db",
}

HEALTH_PATH = "/api/v1/health"
REPO_ROOT = Path(__file__).resolve().parents[1]

OUTPUT_LINES = 2000  # lines of output kept per service
ERROR_LINES = 30  # lines of output quoted in a StackError
POLL_INTERVAL = 0.2  # seconds between two health checks
STREAM_LIMIT = 1 << 20  # longest output line read whole; longer ones are dropped
DRAIN_TIMEOUT = 2.0  # seconds to read what a process printed after it exited

# ANSI colours, one per service: cyan, green, yellow, magenta, blue, red.
_COLORS = ("36", "32", "33", "35", "34", "31")


class StackError(Exception):
    """A service did not start: it exited early, or was not healthy in time."""

    def __init__(self, service: str, message: str, lines: Sequence[str] = ()) -> None:
        self.service = service
        self.lines = list(lines)
        text = f"{service}: {message}"
        if self.lines:
            text += f"\n--- last {len(self.lines)} line(s) of {service} output ---\n"
            text += "\n".join(self.lines)
        super().__init__(text)


@dataclass
class _Child:
    service: str
    process: asyncio.subprocess.Process
    pump: asyncio.Task[None]
    log: IO[str] | None


def replica_name(service: str, index: int) -> str:
    return service if index == 1 else f"{service}#{index}"


def base_service(name: str) -> str:
    return name.partition("#")[0]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _exited(process: asyncio.subprocess.Process) -> None:
    await process.wait()


def describe_exit(returncode: int | None) -> str:
    """`exited with code 1`, `was killed by SIGKILL`, or `is running`."""
    if returncode is None:
        return "is running"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"was killed by {name}"
    return f"exited with code {returncode}"


async def _port_in_use(port: int) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 1.0)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


def _send(process: asyncio.subprocess.Process, sig: signal.Signals) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(sig)


class Stack:
    """Start, watch, restart and stop the service processes."""

    def __init__(
        self,
        *,
        env: Mapping[str, str] | None = None,
        ports: Mapping[str, int] | None = None,
        db_prefix: str = "",
        python: str = sys.executable,
        log_dir: Path | None = None,
        echo: bool = False,
        cwd: Path | None = None,
        replicas: Mapping[str, int] | None = None,
        direct_logs: bool = False,
    ) -> None:
        if direct_logs and (log_dir is None or echo):
            raise ValueError("direct_logs needs a log_dir and no echo")
        self._env = dict(env or {})
        # The children write their log files themselves: no line passes through this
        # process (a benchmark keeps its CPU for the load).
        self._direct = direct_logs
        self._replicas = {s: 1 for s in SERVICES}
        for service, count in (replicas or {}).items():
            if service not in self._replicas:
                raise ValueError(f"unknown service {service!r}")
            if count < 1:
                raise ValueError(f"{service} needs at least one replica, not {count}")
            self._replicas[service] = count
        self._ports = {**DEFAULT_PORTS, **(ports or {})}
        for service, count in self._replicas.items():
            for index in range(2, count + 1):
                self._ports[replica_name(service, index)] = _free_port()
        self._db_prefix = db_prefix
        self._python = python
        self._log_dir = Path(log_dir) if log_dir is not None else None
        self._echo = echo
        self._color = echo and sys.stdout.isatty() and "NO_COLOR" not in os.environ
        self._cwd = Path(cwd) if cwd is not None else REPO_ROOT
        self._children: dict[str, _Child] = {}
        self._service_env: dict[str, dict[str, str]] = {s: {} for s in SERVICES}
        self._lines: dict[str, deque[str]] = defaultdict(lambda: deque(maxlen=OUTPUT_LINES))
        self._line_count: dict[str, int] = defaultdict(int)
        self._run_start: dict[str, int] = defaultdict(int)
        self._logs_opened: set[str] = set()

    # -- queries ---------------------------------------------------------------------------

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self._ports[self._name(service)]}"

    def port(self, service: str) -> int:
        return self._ports[self._name(service)]

    def database(self, service: str) -> str:
        """The database name the service is given (DB_NAME); replicas share it."""
        return self._db_prefix + DEFAULT_DB[base_service(self._name(service))]

    def instances(self, service: str | None = None) -> list[str]:
        """The replica names of a service (of every service by default), in order."""
        services = SERVICES if service is None else (base_service(self._name(service)),)
        return [replica_name(s, i) for s in services for i in range(1, self._replicas[s] + 1)]

    def output(self, service: str) -> list[str]:
        """Lines the service printed so far (the last OUTPUT_LINES, across restarts);
        none with `direct_logs`, where they are only in the log files."""
        return list(self._lines[self._name(service)])

    def pid(self, service: str) -> int | None:
        """The pid of the service's process while it runs, else None."""
        child = self._children.get(self._name(service))
        if child is None or child.process.returncode is not None:
            return None
        return child.process.pid

    def returncode(self, service: str) -> int | None:
        """The exit status of a process that ended but was not stopped (reaped) yet."""
        child = self._children.get(self._name(service))
        return None if child is None else child.process.returncode

    def running(self, service: str) -> bool:
        return self.pid(service) is not None

    @property
    def services(self) -> list[str]:
        """Services with a process (running, or exited but not stopped yet)."""
        return list(self._children)

    # -- lifecycle -------------------------------------------------------------------------

    async def start(
        self,
        services: Iterable[str] | None = None,
        timeout: float = 60,  # noqa: ASYNC109 - one deadline for spawning and health checks
    ) -> None:
        """Spawn the services not running yet, then wait until every one is healthy.

        Raises StackError naming the service if one exits early or is not healthy within
        `timeout` seconds; the processes this call spawned are stopped again then.
        """
        names = self._names(services if services is not None else SERVICES)
        deadline = asyncio.get_running_loop().time() + timeout
        spawned: list[str] = []
        try:
            for name in names:
                if self.running(name):
                    continue
                if name in self._children:  # exited (killed, crashed) but not reaped yet
                    await self.stop([name])
                if await _port_in_use(self._ports[name]):
                    raise StackError(
                        name,
                        f"port {self._ports[name]} is already in use by another process "
                        f"(set {PORT_ENV[base_service(name)]} or stop that process)",
                    )
                await self._spawn(name)
                spawned.append(name)
            await self._wait_healthy(names, deadline, budget=timeout)
        except BaseException:
            await self.stop(spawned)
            raise

    async def stop(
        self,
        services: Iterable[str] | None = None,
        timeout: float = 10,  # noqa: ASYNC109 - the grace period before SIGKILL
    ) -> None:
        """SIGTERM the services (all by default), SIGKILL what is left after `timeout`
        seconds, and reap them. Stopping a service that is not running does nothing."""
        names = list(self._children) if services is None else self._names(services)
        children = [self._children[n] for n in names if n in self._children]
        if not children:
            return
        try:
            for child in children:
                _send(child.process, signal.SIGTERM)
                _send(child.process, signal.SIGCONT)  # a frozen one takes its SIGTERM now
            waits = [child.process.wait() for child in children]
            try:
                await asyncio.wait_for(asyncio.gather(*waits), timeout)
            except TimeoutError:
                for child in children:
                    _send(child.process, signal.SIGKILL)
                await asyncio.gather(*(child.process.wait() for child in children))
            await asyncio.wait([child.pump for child in children], timeout=DRAIN_TIMEOUT)
        finally:
            # Also reached when the caller is cancelled: nothing may survive it. A process
            # killed here is reaped by the event loop's child watcher.
            for child in children:
                _send(child.process, signal.SIGKILL)
                if not child.pump.done():
                    child.pump.cancel()
                if child.log is not None:
                    child.log.close()
                if self._children.get(child.service) is child:
                    del self._children[child.service]

    async def restart(
        self,
        service: str,
        env: Mapping[str, str] | None = None,
        timeout: float = 60,  # noqa: ASYNC109 - passed on to start()
    ) -> None:
        """Stop the service and start it again with `env` merged over the extra env it had
        before; that env stays with this service for later restarts."""
        names = self._names([service])
        await self.stop(names)
        self._service_env[base_service(self._name(service))].update(env or {})
        await self.start(names, timeout=timeout)

    def kill(self, service: str) -> None:
        """SIGKILL the process (a crash); a plain service name kills all its replicas.
        `stop()` or `start()` reaps it later."""
        self._signal(service, signal.SIGKILL)

    def freeze(self, service: str) -> None:
        """SIGSTOP the process (a hang: connections open, nothing answered); a plain
        service name freezes all its replicas. `thaw()` lets it go on where it was."""
        self._signal(service, signal.SIGSTOP)

    def thaw(self, service: str) -> None:
        self._signal(service, signal.SIGCONT)

    def _signal(self, service: str, sig: signal.Signals) -> None:
        for name in self._names([service]):
            child = self._children.get(name)
            if child is not None:
                _send(child.process, sig)

    async def wait_exit(self, services: Iterable[str] | None = None) -> tuple[str, int]:
        """Wait until one of the services' processes ends; return its name and exit status."""
        names = list(self._children) if services is None else self._names(services)
        children = [self._children[n] for n in names if n in self._children]
        if not children:
            raise ValueError("no such service process to wait for")
        tasks = {asyncio.ensure_future(child.process.wait()): child for child in children}
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
        child = next(tasks[t] for t in tasks if t in done)
        returncode = child.process.returncode
        assert returncode is not None
        return child.service, returncode

    async def __aenter__(self) -> Self:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- internals -------------------------------------------------------------------------

    def _name(self, service: str) -> str:
        base, _, index = service.partition("#")
        if base not in DEFAULT_DB:
            raise ValueError(f"unknown service {service!r}; expected one of {', '.join(SERVICES)}")
        if index and not (index.isdigit() and 2 <= int(index) <= self._replicas[base]):
            raise ValueError(f"{base} has no replica {index!r} (it has {self._replicas[base]})")
        return service

    def _names(self, services: Iterable[str]) -> list[str]:
        """Instance names: a plain service name stands for all of its replicas."""
        if isinstance(services, str):  # a lone name, not an iterable of its characters
            services = [services]
        names: list[str] = []
        for service in services:
            expanded = [service] if "#" in self._name(service) else self.instances(service)
            names += [n for n in expanded if n not in names]
        return names

    def _child_env(self, name: str) -> dict[str, str]:
        service = base_service(name)
        env = dict(os.environ)
        env.update(self._env)
        env["DB_NAME"] = self.database(service)
        env.update(self._service_env[service])
        env[PORT_ENV[service]] = str(self._ports[name])
        if service == "saga_orchestrator":  # its console's gateway reaches the others here
            for other in SERVICES[1:]:
                env.setdefault(f"{other.upper()}_URL", self.url(other))
        env["INSTANCE_NAME"] = name
        env["PYTHONUNBUFFERED"] = "1"
        return env

    async def _spawn(self, service: str) -> None:
        log = self._open_log(service)
        try:
            process = await asyncio.create_subprocess_exec(
                self._python,
                "-m",
                base_service(service),
                cwd=self._cwd,
                env=self._child_env(service),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log if self._direct else asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                limit=STREAM_LIMIT,
            )
        except BaseException:
            if log is not None:
                log.close()
            raise
        self._run_start[service] = self._line_count[service]
        if self._direct:
            pump = asyncio.create_task(_exited(process), name=f"{service}-wait")
        else:
            assert process.stdout is not None
            pump = asyncio.create_task(
                self._pump(service, process.stdout, log), name=f"{service}-out"
            )
        self._children[service] = _Child(service, process, pump, log)

    def _open_log(self, service: str) -> IO[str] | None:
        """The service's log file: truncated on its first start, appended to on restarts."""
        if self._log_dir is None:
            return None
        self._log_dir.mkdir(parents=True, exist_ok=True)
        mode = "a" if service in self._logs_opened else "w"
        self._logs_opened.add(service)
        return open(self._log_dir / f"{service}.log", mode, encoding="utf-8")

    async def _pump(self, service: str, stream: asyncio.StreamReader, log: IO[str] | None) -> None:
        while True:
            try:
                raw = await stream.readline()
            except ValueError:  # longer than STREAM_LIMIT: the stream dropped it
                raw = b"<output line too long, dropped>\n"
            if not raw:
                return
            self._emit(service, raw.decode("utf-8", errors="replace").rstrip("\r\n"), log)

    def _emit(self, service: str, line: str, log: IO[str] | None) -> None:
        self._lines[service].append(line)
        self._line_count[service] += 1
        if log is not None:
            with contextlib.suppress(OSError, ValueError):
                log.write(line + "\n")
                log.flush()
        if self._echo:
            # The prefix names the service already; drop the service's own tag.
            line = line.replace(f" [{base_service(service)}] ", " ", 1)
            prefix = f"{service:<22} |"
            if self._color:
                color = _COLORS[SERVICES.index(base_service(service)) % len(_COLORS)]
                prefix = f"\033[{color}m{prefix}\033[0m"
            with contextlib.suppress(OSError, ValueError):
                sys.stdout.write(f"{prefix} {line}\n")
                sys.stdout.flush()

    def _tail(self, service: str) -> list[str]:
        """The last ERROR_LINES lines of the service's current run."""
        if self._direct:
            assert self._log_dir is not None
            with contextlib.suppress(OSError):
                lines = (self._log_dir / f"{service}.log").read_text(errors="replace")
                return lines.splitlines()[-ERROR_LINES:]
            return []
        new = self._line_count[service] - self._run_start[service]
        count = min(ERROR_LINES, new, len(self._lines[service]))
        return list(self._lines[service])[-count:] if count > 0 else []

    async def _wait_healthy(self, names: list[str], deadline: float, budget: float) -> None:
        async with httpx.AsyncClient(timeout=2.0, trust_env=False) as client:
            tasks = [
                asyncio.create_task(self._wait_one(client, name, deadline, budget))
                for name in names
            ]
            try:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            for task in tasks:
                if task in done and (error := task.exception()) is not None:
                    raise error

    async def _wait_one(
        self, client: httpx.AsyncClient, service: str, deadline: float, budget: float
    ) -> None:
        loop = asyncio.get_running_loop()
        child = self._children.get(service)
        if child is None:
            raise StackError(service, "has no process")
        url = self.url(service) + HEALTH_PATH
        last = "no answer"
        while True:
            if child.process.returncode is not None:
                # Read what it printed before it went, so the error can quote it.
                await asyncio.wait([child.pump], timeout=DRAIN_TIMEOUT)
                raise StackError(
                    service,
                    f"{describe_exit(child.process.returncode)} before it became healthy",
                    self._tail(service),
                )
            try:
                response = await client.get(url)
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            else:
                if response.status_code == 200:
                    return
                last = f"HTTP {response.status_code}: {response.text[:300]}"
            if loop.time() >= deadline:
                raise StackError(
                    service,
                    f"not healthy within {budget:g}s (GET {url}; last answer: {last})",
                    self._tail(service),
                )
            await asyncio.sleep(POLL_INTERVAL)
