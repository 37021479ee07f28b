"""The process shape every service shares: settings, pre-start (database, migrations,
seed), the FastAPI app with its lifespan (broker, consumer, outbox sweep), and `main`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Hashable, Mapping
from dataclasses import dataclass
from types import FrameType
from typing import Annotated, Any, Generic, TypeVar

import asyncpg
import uvicorn
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from pydantic import ValidationError
from sqlalchemy import MetaData
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared_domain import choreography, failure_rates, metrics, migrations, pg, tracing
from shared_domain.admin import audit_router, failure_rates_router
from shared_domain.auth import OPERATOR, Auth, require_declared
from shared_domain.backoff import Backoff
from shared_domain.batching import Batcher, Preload, joined_unit_of_work
from shared_domain.breaker import Breaker
from shared_domain.contracts import CHOREOGRAPHY_SENDERS, SENDERS, Envelope
from shared_domain.db import UnitOfWork, create_engine, create_pool
from shared_domain.failure_rates import FailureRates
from shared_domain.health import breaker_check, broker_check, database_check, health_router
from shared_domain.http import (
    BodyLimitMiddleware,
    JsonResponse,
    OutageMiddleware,
    RequestIdMiddleware,
    install_error_handlers,
)
from shared_domain.logs import configure_logging
from shared_domain.messaging.alarms import BlockWatch
from shared_domain.messaging.broker import Broker, StyleConflict
from shared_domain.messaging.consumer import Consumer, Handler
from shared_domain.messaging.topology import QueueSpec
from shared_domain.openapi import document_errors
from shared_domain.outbox import OutboxRelay
from shared_domain.retry import startup_retrying
from shared_domain.settings import ServiceSettings

log = logging.getLogger(__name__)

S = TypeVar("S", bound=ServiceSettings)


@dataclass(frozen=True)
class ServiceDefinition(Generic[S]):
    name: str
    title: str
    settings_factory: Callable[[], S]
    metadata: MetaData
    queue: QueueSpec
    build_handlers: Callable[[Runtime[S]], Mapping[Any, Handler]]
    router: APIRouter
    seed: Callable[[AsyncConnection], Awaitable[None]] | None = None
    # Whether its message handlers may share a transaction (see shared_domain.batching):
    # only when they touch nothing but the service's database.
    batches: bool = False
    # What a batch's handlers will need, loaded in one statement (see shared_domain.batching).
    preload: Preload | None = None
    # Extra loops the service runs beside its consumer until it stops.
    background: tuple[Callable[[Runtime[S], asyncio.Event], Coroutine[Any, Any, None]], ...] = ()
    # The dead-letter queues whose depth its /metrics reports (default: its own queue's).
    dead_letter_queues: tuple[str, ...] = ()
    # Its own scrape-time readings, beside those every service takes (see shared_domain.metrics).
    readings: Callable[[Runtime[S]], Mapping[str, metrics.Reading]] | None = None
    # Its chaos knobs, changeable at run time (see shared_domain.failure_rates): name ->
    # (environment variable, start-up value).
    failure_rates: Callable[[S], Mapping[str, tuple[str, float]]] | None = None
    # ASGI apps it serves beside its API (path, factory): the orchestrator's console.
    mounts: tuple[tuple[str, Callable[[], ASGIApp]], ...] = ()


class Runtime(Generic[S]):
    """What a running service holds: its settings, writers' pool, read engine, broker,
    relay and consumer."""

    def __init__(self, definition: ServiceDefinition[S], settings: S) -> None:
        self.definition = definition
        self.name = definition.name
        self.settings = settings
        self.engine: AsyncEngine = create_engine(settings)
        self.broker = Broker(
            settings.amqp_url,
            prefetch_count=settings.prefetch_count,
            app_id=definition.name,
            style=settings.saga_style,
            bindings=choreography.bindings(settings.saga_style),
        )
        self.block_watch = BlockWatch(self.broker)
        self.breakers: dict[str, Breaker] = {}
        self.failure_rates = (
            FailureRates(definition.failure_rates(settings)) if definition.failure_rates else None
        )
        self._pool: asyncpg.Pool | None = None
        self._relay: OutboxRelay | None = None
        self._batcher: Batcher | None = None
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._closers: list[Callable[[], Awaitable[None]]] = []
        self._closing: list[Callable[[], None]] = []
        # What the service's own parts keep for the process's lifetime, by key.
        self.components: dict[Hashable, Any] = {}

    def on_stop(self, closer: Callable[[], Awaitable[None]]) -> None:
        self._closers.append(closer)

    def on_closing(self, hook: Callable[[], None]) -> None:
        """`hook` runs as soon as the process is told to stop, before the server waits
        for its open responses to finish (a live stream would never finish)."""
        self._closing.append(hook)

    def closing(self) -> None:
        hooks, self._closing = self._closing, []
        for hook in hooks:
            try:
                hook()
            except Exception:
                log.exception("%s: a closing hook failed", self.name)

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError(f"{self.name} is not started")
        return self._pool

    @property
    def relay(self) -> OutboxRelay:
        if self._relay is None:
            raise RuntimeError(f"{self.name} is not started")
        return self._relay

    def uow(self, message: Envelope | None = None) -> UnitOfWork:
        """A unit of work (claiming `message`, a handler's): its own transaction, or its
        share of the running batch's."""
        return joined_unit_of_work(message) or UnitOfWork(
            self.pool, self.relay, self.settings.outbox_grace_period, message
        )

    def breaker(self, name: str, outages: tuple[type[BaseException], ...]) -> Breaker:
        """The process's circuit breaker around provider `name`, counting `outages`; its
        state shows in the health detail under that name."""
        breaker = self.breakers.get(name)
        if breaker is None:
            breaker = self.breakers[name] = Breaker(
                name,
                threshold=self.settings.circuit_breaker_threshold,
                reset_seconds=self.settings.circuit_breaker_reset,
                outages=outages,
            )
        return breaker

    def readings(self) -> dict[str, metrics.Reading]:
        """What a scrape reads afresh: the outbox backlog, the pools, dead-letter depths,
        and the service's own."""
        definition = self.definition
        dead_letter_queues = list(definition.dead_letter_queues or (definition.queue.dlq,))

        async def pools() -> None:
            metrics.DB_POOL_IN_USE.labels("writers").set(
                self.pool.get_size() - self.pool.get_idle_size()
            )
            metrics.DB_POOL_MAX.labels("writers").set(self.pool.get_max_size())
            metrics.DB_POOL_IN_USE.labels("readers").set(self.engine.pool.checkedout())  # type: ignore[attr-defined]
            metrics.DB_POOL_MAX.labels("readers").set(self.settings.db_read_pool_size)

        async def dead_letters() -> None:
            if self.broker.blocked:  # it reads nothing of ours: the depths stay as they were
                return
            for queue, depth in (await self.broker.queue_depths(dead_letter_queues)).items():
                metrics.DEAD_LETTERS.labels(queue).set(depth)

        own = definition.readings(self) if definition.readings else {}

        async def broker() -> None:
            self.block_watch.look()

        return {
            "pools": pools,  # first: before the other readings borrow a connection
            "broker": broker,
            "outbox": self.relay.read_backlog,
            "dead_letters": dead_letters,
            **own,
        }

    async def open_database(self) -> None:
        """The writers' pool and the outbox relay on it (no connection opened yet)."""
        self._pool = await create_pool(self.settings)
        self._relay = OutboxRelay(
            self._pool,
            self.broker,
            sweep_interval=self.settings.outbox_sweep_interval,
            publish_wait=self.settings.outbox_publish_wait,
        )

    async def start(self) -> None:
        s = self.settings
        await self.open_database()
        try:
            async for attempt in startup_retrying(s.startup_timeout, never=(StyleConflict,)):
                with attempt:
                    await self.broker.connect()
        except StyleConflict as exc:
            raise SystemExit(f"{self.name}: refusing to start: {exc}") from None
        except Exception as exc:
            raise SystemExit(
                f"{self.name}: cannot reach RabbitMQ at {s.amqp_display}: {exc}. "
                "Start it (e.g. `rabbitmq-server -detached`) or set RABBITMQ_HOST/RABBITMQ_PORT."
            ) from exc
        if self.failure_rates is not None:
            try:  # before the first message: an operator's rate applies from the start
                await failure_rates.start(self)
            except Exception as exc:
                log.warning("%s: starting on the environment's failure rates: %s", self.name, exc)
            self._tasks.append(
                asyncio.create_task(failure_rates.follow(self, self._stop), name="failure-rates")
            )
        if self.definition.batches and s.consumer_batch_size > 1:
            self._batcher = Batcher(
                lambda: UnitOfWork(self.pool, None, s.outbox_grace_period, begin_later=True),
                self.relay.publish_committed,
                max_size=s.consumer_batch_size,
                preload=self.definition.preload,
            )
            self._batcher.start()
        handlers = self.definition.build_handlers(self)
        choreographed = s.saga_mode == choreography.CHOREOGRAPHY
        if choreographed:  # a worker also reacts to the events that stand for its commands
            handlers = choreography.reacting(handlers)
        consumer = Consumer(
            self.broker,
            self.definition.queue,
            handlers,
            max_retries=s.message_max_retries,
            max_wait=s.message_max_wait,
            backoff=Backoff(s.retry_base_delay, s.retry_max_delay),
            service=self.name,
            run=self._batcher.run if self._batcher is not None else None,
            senders=CHOREOGRAPHY_SENDERS if choreographed else SENDERS,
            max_bytes=s.max_message_bytes,
        )
        await consumer.start()
        self._tasks.append(asyncio.create_task(self.relay.run(self._stop), name="outbox-sweep"))
        self._tasks.append(
            asyncio.create_task(self.block_watch.run(self._stop), name="broker-block-watch")
        )
        for loop in self.definition.background:
            self._tasks.append(asyncio.create_task(loop(self, self._stop), name=loop.__name__))

    async def stop(self) -> None:
        self.closing()
        self._stop.set()
        for task in self._tasks:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, timeout=5)
        await self.broker.close()
        if self._batcher is not None:
            with contextlib.suppress(Exception):
                await self._batcher.stop()
        for closer in self._closers:
            with contextlib.suppress(Exception):
                await closer()
        if self._pool is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._pool.close(), timeout=5)
        await self.engine.dispose()


def runtime_of(request: Request) -> Runtime[Any]:
    runtime: Runtime[Any] = request.app.state.runtime
    return runtime


async def get_runtime(request: Request) -> Runtime[Any]:
    # async: FastAPI runs a plain `def` dependency in its thread pool, a thread hand-off
    # per request for an attribute lookup.
    return runtime_of(request)


RuntimeDep = Annotated[Runtime[Any], Depends(get_runtime)]


def create_app(definition: ServiceDefinition[S], settings: S) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = Runtime(definition, settings)
        await runtime.start()
        app.state.runtime = runtime
        _running.add(runtime)
        log.info("%s listening on %s:%d", definition.name, settings.host, settings.port)
        try:
            yield
        finally:
            _running.discard(runtime)
            await runtime.stop()
            tracing.shutdown()

    app = FastAPI(
        title=definition.title,
        lifespan=lifespan,
        default_response_class=JsonResponse,
        # FastAPI's own OpenTelemetry: a server span per request (the trace an order's
        # POST starts), and only when tracing is configured; the metrics are ours.
        telemetry={"operation_spans": False, "metrics": False, "logs": False},
    )
    app.state.auth = Auth(settings)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(OutageMiddleware)
    app.add_middleware(RequestIdMiddleware)
    app.add_middleware(metrics.HttpMetricsMiddleware)  # added last: outermost
    install_error_handlers(app)
    document_errors(app, settings.auth_mode)

    def checks(request: Request) -> dict[str, Any]:
        runtime = runtime_of(request)
        return {
            "database": database_check(runtime.engine, settings.db_display),
            "rabbitmq": broker_check(
                lambda: runtime.broker.is_connected,
                lambda: runtime.block_watch.blocked_for,
                settings.amqp_display,
            ),
            **{name: breaker_check(b) for name, b in runtime.breakers.items()},
        }

    @app.get("/metrics", include_in_schema=False, dependencies=[OPERATOR])
    async def prometheus_metrics(request: Request) -> Response:
        await metrics.refresh(runtime_of(request).readings())
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    app.include_router(health_router(definition.name, checks), prefix="/api/v1")
    if "admin_audit" in definition.metadata.tables:
        app.include_router(audit_router, prefix="/api/v1")
    if definition.failure_rates is not None:
        app.include_router(failure_rates_router, prefix="/api/v1")
    for path, make in definition.mounts:
        app.mount(path, make())
    app.include_router(definition.router, prefix="/api/v1")
    require_declared(app.routes)
    return app


_running: set[Runtime[Any]] = set()


def refusals_in_one_line(app: ASGIApp) -> ASGIApp:
    """A refusal to start (SystemExit from the lifespan, which already says what is wrong
    and what to do) reaches uvicorn's log as its message, not as a traceback."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await app(scope, receive, send)
            return

        async def send_refusal(message: Message) -> None:
            # Starlette sends startup.failed from inside its except block, so the
            # exception being handled is the one the lifespan raised.
            refusal = sys.exc_info()[1]
            if message["type"] == "lifespan.startup.failed" and isinstance(refusal, SystemExit):
                message = {**message, "message": str(refusal)}
            await send(message)

        await app(scope, receive, send_refusal)

    return wrapped


class _Server(uvicorn.Server):
    """Tells the running service it is stopping as soon as the signal comes."""

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        try:
            loop = asyncio.get_running_loop()  # the signal is handled on the loop's thread
        except RuntimeError:
            loop = None
        if loop is not None:
            for runtime in list(_running):
                loop.call_soon_threadsafe(runtime.closing)
        super().handle_exit(sig, frame)


def load_settings(definition: ServiceDefinition[S]) -> S:
    try:
        return definition.settings_factory()
    except ValidationError as exc:
        lines = [f"{definition.name}: invalid configuration, refusing to start:"]
        for err in exc.errors():
            name = ".".join(str(p) for p in err["loc"]).upper()
            if not name:  # a rule across several settings: its message names them
                lines.append(f"  {err['msg'].removeprefix('Value error, ')}")
            elif "secret" in name.lower() or name.endswith("_KEY"):
                lines.append(f"  {name}: {err['msg']}")  # never the value of a secret
            else:
                lines.append(f"  {name}={err.get('input')!r}: {err['msg']}")
        raise SystemExit("\n".join(lines)) from None


async def ensure_database(settings: ServiceSettings) -> None:
    """Wait for PostgreSQL, and create this service's database if it is missing."""
    where = f"{settings.db_host}:{settings.db_port}"

    async def connect(database: str) -> asyncpg.Connection:
        return await pg.connect(settings, database, connect_timeout=5)

    try:
        async for attempt in startup_retrying(
            settings.startup_timeout, OSError, asyncpg.CannotConnectNowError, TimeoutError
        ):
            with attempt:
                try:
                    conn = await connect(settings.db_name)
                except asyncpg.InvalidCatalogNameError:
                    admin = await connect("postgres")
                    try:
                        await admin.execute(f'CREATE DATABASE "{settings.db_name}"')
                        log.info("created database %s", settings.db_name)
                    except (asyncpg.DuplicateDatabaseError, asyncpg.UniqueViolationError):
                        pass  # a replica starting beside us created it first
                    finally:
                        await admin.close()
                    conn = await connect(settings.db_name)
                await conn.close()
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        raise SystemExit(
            f"cannot reach PostgreSQL database {settings.db_name!r} at {where} as "
            f"{settings.db_user!r}: {exc}. Start PostgreSQL (e.g. `pg_ctlcluster 15 main "
            "start` or `docker compose up -d postgres`) or set DB_HOST/DB_PORT/DB_USER."
        ) from exc


async def seed(definition: ServiceDefinition[Any], settings: ServiceSettings) -> None:
    if definition.seed is None:
        return
    engine = create_engine(settings)
    try:
        async with engine.begin() as conn:
            await definition.seed(conn)
    finally:
        await engine.dispose()


def prestart(definition: ServiceDefinition[Any], settings: ServiceSettings) -> None:
    asyncio.run(ensure_database(settings))
    migrations.upgrade(definition.name, settings.database_url())
    log.info("%s: database %s migrated", definition.name, settings.db_display)
    asyncio.run(seed(definition, settings))


def main(definition: ServiceDefinition[Any]) -> None:
    settings = load_settings(definition)
    configure_logging(definition.name, settings.log_level, settings.log_format)
    tracing.configure_tracing(definition.name)
    try:
        prestart(definition, settings)
    except SystemExit as exc:
        log.error("%s", exc)
        sys.exit(1)
    config = uvicorn.Config(
        refusals_in_one_line(create_app(definition, settings)),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        loop="uvloop" if sys.platform != "win32" else "asyncio",
        http="httptools",
        timeout_graceful_shutdown=10,
    )
    _Server(config).run()
