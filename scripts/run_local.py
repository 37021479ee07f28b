"""Run the whole stack on this machine, in the foreground, until Ctrl-C.

    python -m scripts.run_local [--services NAME ...] [--env KEY=VALUE ...] [--scale NAME=N ...]
                                [--db-prefix PREFIX] [--restart]

`--scale payment_service=3` runs three replicas of a service (the orchestrator too), as
`docker compose up --scale` does: replica 1 keeps the service's port, the others get free
ports, and all of them share the service's database and queue.

Checks that PostgreSQL and RabbitMQ are reachable (same settings as the services: the
environment, then `.env`, then the defaults), starts the services, waits until every one is
healthy, prints where each listens, then streams their logs prefixed with `[service] `.
Ctrl-C (SIGINT) or SIGTERM stops everything and exits 0; a service that dies on its own
stops the rest and exits 1, or with `--restart` is started again. Without ADMIN_API_KEY
set, the run makes a key of its own for every service and prints it with the console's
address. With AUTH_MODE=jwt and no JWT_SECRET, it makes a secret of its own too, and
prints an admin token (and the console's address signed in with it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import secrets
import signal
import sys
from collections.abc import Mapping, Sequence
from datetime import timedelta

import aio_pika
from dotenv import dotenv_values
from pydantic import ValidationError

from scripts.stack import (
    DEFAULT_PORTS,
    HEALTH_PATH,
    PORT_ENV,
    REPO_ROOT,
    SERVICES,
    Stack,
    StackError,
    describe_exit,
)
from shared_domain import pg
from shared_domain.auth import Role, mint
from shared_domain.settings import ServiceSettings

CHECK_TIMEOUT = 3.0
START_TIMEOUT = 120.0
# With --restart, a service that dies more often than this gives up the run: it is
# broken, not killed.
CRASH_LIMIT = 5
CRASH_WINDOW = 60.0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="run-local",
        description="Start the order saga services locally and stream their logs until Ctrl-C.",
    )
    parser.add_argument(
        "--services",
        nargs="+",
        choices=SERVICES,
        default=list(SERVICES),
        metavar="NAME",
        help=f"start only these services (default: all of {', '.join(SERVICES)})",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for every service, repeatable (e.g. PAYMENT_FAILURE_RATE=1)",
    )
    parser.add_argument(
        "--scale",
        action="append",
        default=[],
        metavar="NAME=N",
        help="run N replicas of a service, repeatable (e.g. --scale saga_orchestrator=3)",
    )
    parser.add_argument(
        "--saga-mode",
        choices=("orchestration", "choreography"),
        default=None,
        help="who runs the saga: the orchestrator (orchestration, the default) or the "
        "services reacting to each other's events (choreography); sets SAGA_MODE for every "
        'service (docs/architecture.md, "Two styles")',
    )
    parser.add_argument(
        "--db-prefix",
        default="",
        metavar="PREFIX",
        help="put PREFIX before every service's database name, to keep this run's databases "
        "apart from another's (DB_NAME names one database, so it cannot do that)",
    )
    parser.add_argument(
        "--restart",
        action="store_true",
        help="start a service again when it dies (kill -9 one and watch the sagas recover) "
        "instead of stopping them all",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=START_TIMEOUT,
        help=f"seconds to wait for every service to be healthy (default {START_TIMEOUT:g})",
    )
    args = parser.parse_args(argv)
    extra: dict[str, str] = {}
    for item in args.env:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            parser.error(f"--env expects KEY=VALUE, got {item!r}")
        extra[key.strip()] = value
    if args.saga_mode is not None:
        extra["SAGA_MODE"] = args.saga_mode
    args.extra_env = extra
    replicas: dict[str, int] = {}
    for item in args.scale:
        name, sep, count = item.partition("=")
        if not sep or name not in SERVICES or not count.isdigit() or not 1 <= int(count) <= 20:
            parser.error(
                f"--scale expects NAME=N with NAME one of {', '.join(SERVICES)} and N in 1..20, "
                f"got {item!r}"
            )
        replicas[name] = int(count)
    args.replicas = replicas
    # Keep the documented order whatever order they were given in.
    args.services = [s for s in SERVICES if s in args.services]
    return args


def service_ports(extra: Mapping[str, str]) -> dict[str, int]:
    """Each service's port: --env, then the environment, then `.env`, then the default."""
    dotenv = {k: v for k, v in dotenv_values(REPO_ROOT / ".env").items() if v is not None}
    ports: dict[str, int] = {}
    for service in SERVICES:
        var = PORT_ENV[service]
        raw = extra.get(var) or os.environ.get(var) or dotenv.get(var)
        try:
            ports[service] = int(raw) if raw else DEFAULT_PORTS[service]
        except ValueError:
            raise SystemExit(f"{var}={raw!r} is not a port number") from None
    return ports


def connection_shortfall(settings: ServiceSettings, processes: int, free: int) -> str | None:
    """A warning when the processes could together open more connections than the server
    has `free`, else None. Running short loses nothing (a message whose handler is refused
    a connection is retried as in an outage, a request gets a 503), but it slows the
    stack down under load."""
    per_process = settings.db_pool_size + settings.db_read_pool_size
    if processes * per_process <= free:
        return None
    fitting_pool = free // processes - settings.db_read_pool_size
    remedy = (
        f"lower DB_POOL_SIZE (--env DB_POOL_SIZE={fitting_pool}) or raise"
        if fitting_pool >= 1
        else "raise"
    )
    return (
        f"warning: {processes} processes may open up to {processes * per_process} PostgreSQL "
        f"connections (DB_POOL_SIZE {settings.db_pool_size} + DB_READ_POOL_SIZE "
        f"{settings.db_read_pool_size} each), but the server has {free} free. Under load, "
        f"messages refused a connection are retried and requests answered 503; {remedy} "
        "the server's max_connections."
    )


async def free_connections(settings: ServiceSettings) -> int:
    """Connections PostgreSQL would still accept from a non-superuser."""
    conn = await pg.connect(settings, "postgres", connect_timeout=CHECK_TIMEOUT)
    try:
        free: int = await conn.fetchval(
            "SELECT current_setting('max_connections')::int"
            " - current_setting('superuser_reserved_connections')::int"
            " - (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')"
        )
    finally:
        await conn.close()
    return free


async def check_postgres(settings: ServiceSettings) -> str | None:
    """None when PostgreSQL answers, else what is wrong."""
    try:
        conn = await asyncio.wait_for(
            pg.connect(settings, "postgres", connect_timeout=CHECK_TIMEOUT), CHECK_TIMEOUT + 0.5
        )
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    await conn.close()
    return None


async def check_rabbitmq(settings: ServiceSettings) -> str | None:
    """None when RabbitMQ answers, else what is wrong."""
    # The client logs each failed attempt itself; the report below says it once.
    for name in ("aiormq", "aio_pika"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        conn = await asyncio.wait_for(
            aio_pika.connect(settings.amqp_url, timeout=CHECK_TIMEOUT), CHECK_TIMEOUT + 0.5
        )
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    await conn.close()
    return None


def report_unreachable(
    settings: ServiceSettings, pg_error: str | None, mq_error: str | None
) -> None:
    out = sys.stderr
    if pg_error is not None:
        print(
            f"PostgreSQL is not reachable at {settings.db_host}:{settings.db_port} "
            f"as user {settings.db_user!r} (database 'postgres'):\n  {pg_error}\n"
            "Start it with one of:\n"
            "  pg_ctlcluster <version> main start      (Debian/Ubuntu cluster, e.g. 15)\n"
            "  sudo systemctl start postgresql\n"
            "  docker compose up -d postgres\n"
            "or point DB_HOST / DB_PORT / DB_USER / DB_PASSWORD (environment or .env) at it.\n",
            file=out,
        )
    if mq_error is not None:
        print(
            f"RabbitMQ is not reachable at {settings.rabbitmq_host}:{settings.rabbitmq_port} "
            f"as user {settings.rabbitmq_username!r}, vhost {settings.rabbitmq_vhost!r}:\n"
            f"  {mq_error}\n"
            "Start it with one of:\n"
            "  rabbitmq-server -detached\n"
            "  docker compose up -d rabbitmq\n"
            "or point RABBITMQ_HOST / RABBITMQ_PORT / RABBITMQ_USERNAME / RABBITMQ_PASSWORD / "
            "RABBITMQ_VHOST (environment or .env) at it.",
            file=out,
        )
        if settings.rabbitmq_vhost != "/":
            vhost, user = settings.rabbitmq_vhost, settings.rabbitmq_username
            print(
                f"If RabbitMQ is up, the vhost {vhost!r} may be missing or {user!r} may lack "
                f"permissions on it:\n  rabbitmqctl add_vhost {vhost}\n"
                f'  rabbitmqctl set_permissions -p {vhost} {user} ".*" ".*" ".*"\n',
                file=out,
            )


ADMIN_TOKEN_TTL = timedelta(hours=12)


def print_table(
    stack: Stack,
    services: Sequence[str],
    settings: ServiceSettings,
    made_key: str | None,
    made_secret: str | None = None,
) -> None:
    rows = [("SERVICE", "URL", "HEALTH")]
    rows += [
        (name, stack.url(name), stack.url(name) + HEALTH_PATH)
        for s in services
        for name in stack.instances(s)
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("")
    lines.append(
        f"RabbitMQ management UI: http://{settings.rabbitmq_host}:15672 "
        f"(vhost {settings.rabbitmq_vhost!r})"
    )
    lines.append(f"PostgreSQL: {settings.db_host}:{settings.db_port} as {settings.db_user!r}")
    signed_in = made_key if settings.auth_mode == "none" else None
    if made_secret is not None:  # the settings hold it: the run put it in the environment
        signed_in = mint(settings, Role.ADMIN, "admin", ADMIN_TOKEN_TTL)
    if "saga_orchestrator" in services:
        console = f"{stack.url('saga_orchestrator')}/console/"
        lines.append(f"Console: {console}?key={signed_in}" if signed_in else f"Console: {console}")
    if made_key is not None:
        lines.append(f"Admin key made for this run: export ADMIN_API_KEY={made_key}")
    if made_secret is not None:
        lines.append(f"JWT secret made for this run: export JWT_SECRET={made_secret}")
        lines.append(f"Admin token (12 hours): export SAGA_TOKEN={signed_in}")
        lines.append("More tokens: sagactl token --role customer --subject <customer id>")
    lines.append("All services healthy. Streaming logs; press Ctrl-C to stop.")
    rule = "=" * min(max(len(line) for line in lines), 100)
    print("\n".join(["", rule, *lines, rule, ""]), flush=True)


async def run(args: argparse.Namespace) -> int:
    # Settings as the services read them: the environment (with --env over it), then .env.
    os.environ.update(args.extra_env)
    made_secret = None
    dotenv = dotenv_values(REPO_ROOT / ".env")

    def setting(name: str) -> str | None:
        return os.environ.get(name) or dotenv.get(name)

    if (
        setting("AUTH_MODE") == "jwt"
        and setting("JWT_ALGORITHM") != "RS256"
        and not setting("JWT_SECRET")
    ):
        made_secret = os.environ["JWT_SECRET"] = secrets.token_urlsafe(32)
    try:
        settings = ServiceSettings(_env_file=REPO_ROOT / ".env")
    except ValidationError as exc:
        print(f"invalid configuration:\n{exc}", file=sys.stderr)
        return 2

    pg_error, mq_error = await asyncio.gather(check_postgres(settings), check_rabbitmq(settings))
    if pg_error is not None or mq_error is not None:
        report_unreachable(settings, pg_error, mq_error)
        return 1
    processes = sum(args.replicas.get(service, 1) for service in args.services)
    with contextlib.suppress(Exception):  # only a warning; the services report real errors
        warning = connection_shortfall(settings, processes, await free_connections(settings))
        if warning is not None:
            print(warning, file=sys.stderr, flush=True)

    # The admin actions stay closed by default in the services; a local run opens them
    # with a key of its own, printed with the console's address.
    made_key = (
        None
        if settings.admin_api_key is not None or settings.auth_mode == "jwt"
        else secrets.token_urlsafe(18)
    )
    env = dict(args.extra_env)
    if made_key is not None:
        env["ADMIN_API_KEY"] = made_key
    if made_secret is not None:
        env["JWT_SECRET"] = made_secret

    loop = asyncio.get_running_loop()
    stop_requested = asyncio.Event()
    stack = Stack(
        env=env,
        ports=service_ports(args.extra_env),
        db_prefix=args.db_prefix,
        echo=True,
        replicas=args.replicas,
    )

    def on_signal(sig: signal.Signals) -> None:
        if stop_requested.is_set():
            print(f"\n{sig.name} again: killing the services now.", flush=True)
            for service in stack.services:
                stack.kill(service)
            return
        print(f"\n{sig.name} received: stopping the services...", flush=True)
        stop_requested.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)

    stopper = asyncio.create_task(stop_requested.wait())
    try:
        print(f"Starting {', '.join(args.services)} ...", flush=True)
        starter = asyncio.create_task(stack.start(args.services, timeout=args.timeout))
        await asyncio.wait({stopper, starter}, return_when=asyncio.FIRST_COMPLETED)
        if not starter.done():  # stopped while starting
            starter.cancel()
            with contextlib.suppress(asyncio.CancelledError, StackError):
                await starter
            return 0
        try:
            starter.result()
        except StackError as exc:
            if stop_requested.is_set():  # a service was interrupted by the same Ctrl-C
                return 0
            print(f"\nFailed to start: {exc}", file=sys.stderr, flush=True)
            return 1

        print_table(stack, args.services, settings, made_key, made_secret)

        deaths: list[float] = []
        while True:
            watcher = asyncio.create_task(stack.wait_exit())
            await asyncio.wait({stopper, watcher}, return_when=asyncio.FIRST_COMPLETED)
            if not stop_requested.is_set():
                # The same Ctrl-C reaches the services too; give our own handler a moment.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop_requested.wait(), 0.5)
            if stop_requested.is_set():
                watcher.cancel()
                return 0
            service, returncode = watcher.result()
            now = loop.time()
            deaths = [t for t in deaths if now - t < CRASH_WINDOW] + [now]
            if not args.restart or len(deaths) > CRASH_LIMIT:
                why = (
                    f"it died {len(deaths)} times within {CRASH_WINDOW:g} s"
                    if args.restart
                    else "stopping the other services"
                )
                print(
                    f"\n*** {service} {describe_exit(returncode)} unexpectedly; {why}. ***",
                    file=sys.stderr,
                    flush=True,
                )
                return 1
            print(
                f"\n*** {service} {describe_exit(returncode)} unexpectedly; "
                "starting it again (--restart). ***",
                file=sys.stderr,
                flush=True,
            )
            try:
                await stack.start([service], timeout=args.timeout)
            except StackError as exc:
                print(f"\nFailed to restart: {exc}", file=sys.stderr, flush=True)
                return 1
            print(f"*** {service} is back. ***", file=sys.stderr, flush=True)
    finally:
        stopper.cancel()
        await stack.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        print("All services stopped.", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
