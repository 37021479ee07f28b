"""One benchmark run: an isolated stack (its own vhost and databases, beside anything
else running on the machine), the load, the figures, the invariant check, cleanup."""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp

from saga_orchestrator.domain import REPEATABLE
from scripts.bench import calibrate, procstat
from scripts.bench.load import Driver, Placed
from scripts.bench.outcomes import Outcomes
from scripts.bench.subscribers import StreamSubscribers
from scripts.invariants import TERMINAL, audit_orders, customer_orders, stock_problems
from scripts.isolation import (
    RABBIT_PASSWORD,
    RABBIT_USER,
    create_vhost,
    delete_vhost,
    drop_databases,
    free_port,
)
from scripts.otlp_sink import OtlpSink
from scripts.stack import SERVICES, Stack

STOCK = 10_000_000  # goods received before the run, so that no order fails for stock
ADMIN_KEY = uuid.uuid4().hex  # the run's own: it stocks the warehouse through the API
STEPS = ("payment", "inventory", "shipping", "notification")


@dataclass(frozen=True)
class Config:
    mode: str  # "closed" or "open"
    seconds: float
    concurrency: int = 32
    rate: float = 50.0
    warmup: float = 5.0
    payment_failure_rate: float = 0.0
    shipping_failure_rate: float = 0.0
    notification_failure_rate: float = 0.0
    replicas: int = 1
    calibrate: bool = False
    # Trace every saga, exporting every span over OTLP/HTTP to a receiver in this process.
    tracing: bool = False
    # Clients holding the live saga stream open through the run (warm-up included).
    stream_subscribers: int = 0
    # Who runs the saga (SAGA_MODE), and in choreography whether the orchestrator observes.
    saga_mode: str = "orchestration"
    observer: bool = True
    give_up: float = 300.0  # a client's patience for one order, and the drain bound
    env: dict[str, str] = field(default_factory=dict)


Tick = Callable[[str, float, float], None]  # phase, done, total


def percentiles(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]

    return {
        "p50": at(0.50),
        "p95": at(0.95),
        "p99": at(0.99),
        "max": ordered[-1],
        "mean": statistics.fmean(ordered),
    }


@contextlib.asynccontextmanager
async def isolated_stack(config: Config, log_dir: Path) -> AsyncIterator[tuple[Stack, str]]:
    run = uuid.uuid4().hex[:8]
    vhost = f"bench_{run}"
    prefix = f"bench_{run}_"
    create_vhost(vhost)
    env = {
        "RABBITMQ_VHOST": vhost,
        "PAYMENT_FAILURE_RATE": str(config.payment_failure_rate),
        "SHIPPING_FAILURE_RATE": str(config.shipping_failure_rate),
        "NOTIFICATION_FAILURE_RATE": str(config.notification_failure_rate),
        "ADMIN_API_KEY": ADMIN_KEY,
        "SAGA_MODE": config.saga_mode,
        "SAGA_OBSERVER": str(config.observer).lower(),
        **config.env,
    }
    stack = Stack(
        env=env,
        ports={s: free_port() for s in SERVICES},
        db_prefix=prefix,
        log_dir=log_dir,
        replicas=dict.fromkeys(SERVICES, config.replicas),
        direct_logs=True,
    )
    try:
        await stack.start(timeout=180)
        yield stack, vhost
    finally:
        await stack.stop()
        await drop_databases(prefix)
        delete_vhost(vhost)


class Reader:
    """GETs through the services' public APIs; keeps the sagas it read."""

    def __init__(self, client: aiohttp.ClientSession, stack: Stack) -> None:
        self._client = client
        self._stack = stack
        self.sagas: dict[str, Any] = {}

    async def __call__(self, service: str, path: str) -> Any:
        for attempt in range(20):
            try:
                async with self._client.get(f"{self._stack.url(service)}/api/v1{path}") as response:
                    if response.status == 404:
                        return None
                    if response.status == 200:
                        data = (await response.json())["data"]
                        if service == "saga_orchestrator" and data:
                            self.sagas[data["id"]] = data
                        return data
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.2 * (attempt + 1))
        raise RuntimeError(f"GET {service} {path} kept failing")


async def receive_goods(stack: Stack, client: aiohttp.ClientSession) -> None:
    """The warehouse is stocked for the run, through the inventory's stock endpoint."""
    url = f"{stack.url('inventory_service')}/api/v1/products"
    async with client.get(url) as response:
        products = (await response.json())["data"]
    for product in products:
        wanted = STOCK - product["stock"]
        if wanted > 0:
            async with client.post(
                f"{url}/{product['id']}/stock",
                json={"quantity": wanted},
                headers={"X-Admin-Key": ADMIN_KEY, "X-Admin-Actor": "bench"},
            ) as response:
                if response.status != 200:
                    raise RuntimeError(f"stocking {product['id']}: {await response.text()}")


class CpuMeter:
    """CPU seconds of every service process, RabbitMQ, PostgreSQL and the benchmark."""

    def __init__(self, stack: Stack) -> None:
        stats = procstat.all_stats()
        self.pids: dict[str, int] = {}
        for name in stack.instances():
            pid = stack.pid(name)
            if pid is not None:
                self.pids[name] = pid
        for label, comm in (("rabbitmq", "beam.smp"), ("postgresql", "postgres")):
            pid = procstat.find_server(comm, stats)
            if pid is not None:
                self.pids[label] = pid
        self.pids["benchmark (load generator)"] = os.getpid()

    def read(self) -> dict[str, float]:
        stats = procstat.all_stats()
        cpu = {name: procstat.tree_cpu(pid, stats) for name, pid in self.pids.items()}
        # The services are the benchmark's children: count its own time only.
        own = procstat.read_stat(os.getpid())
        cpu["benchmark (load generator)"] = own.own if own else 0.0
        return cpu


async def run(config: Config, tick: Tick) -> dict[str, Any]:
    log_dir = Path(tempfile.mkdtemp(prefix="saga-bench-"))
    tick("starting the stack", 0, 1)
    async with contextlib.AsyncExitStack() as context:
        sink = None
        if config.tracing:
            sink = await context.enter_async_context(OtlpSink(keep=False))
            traced = {
                "OTEL_EXPORTER_OTLP_ENDPOINT": sink.endpoint,
                "OTEL_TRACES_SAMPLER": "always_on",
            }
            config = replace(config, env={**config.env, **traced})
        result = await _run(config, tick, log_dir)
        if sink is not None:  # the stack has stopped: its span processors have flushed
            result["tracing"] = {"spans_received": sink.received, "export_requests": sink.requests}
        return result


async def _run(config: Config, tick: Tick, log_dir: Path) -> dict[str, Any]:
    async with (
        isolated_stack(config, log_dir) as (stack, vhost),
        aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=30.0),
            connector=aiohttp.TCPConnector(limit=0),
        ) as client,
    ):
        result = await _measure(config, stack, vhost, client, tick)
        result["logs"] = str(log_dir)
        result["durability"] = await calibrate.durability_settings()
        if config.calibrate:
            tick("calibrating RabbitMQ and PostgreSQL", 0, 1)
            ceiling = await calibrate.measure(
                amqp_url(vhost), f"{stack.database('order_service')}_calibration"
            )
            result["calibration"] = _calibration(result, ceiling)
        return result


def amqp_url(vhost: str, environ: Mapping[str, str] = os.environ) -> str:
    """The benchmark's own AMQP connections: the broker the services use (RABBITMQ_HOST
    and RABBITMQ_PORT, as they read them)."""
    host = environ.get("RABBITMQ_HOST", "127.0.0.1")
    port = environ.get("RABBITMQ_PORT", "5672")
    return f"amqp://{RABBIT_USER}:{RABBIT_PASSWORD}@{host}:{port}/{quote(vhost, safe='')}"


async def _measure(
    config: Config, stack: Stack, vhost: str, client: aiohttp.ClientSession, tick: Tick
) -> dict[str, Any]:
    read = Reader(client, stack)
    await receive_goods(stack, client)
    before = {p["id"]: p for p in await read("inventory_service", "/products")}
    products = [(pid, p["price"]) for pid, p in before.items()]
    outcomes = Outcomes(config.saga_mode)
    await outcomes.subscribe(amqp_url(vhost))
    order_urls = [stack.url(n) for n in stack.instances("order_service")]
    streams = StreamSubscribers(
        client,
        [stack.url(n) for n in stack.instances("saga_orchestrator")],
        config.stream_subscribers,
    )
    await streams.start()
    try:
        if config.warmup > 0:
            tick("warming up", 0, 1)
            warm = Driver(client, order_urls, products, outcomes, give_up=config.give_up)
            # The load to be measured, and its sagas all finished before measuring starts:
            # no warm-up backlog is measured, and pools and caches are as warm as they get.
            if config.mode == "closed":
                await warm.closed_loop(config.concurrency, config.warmup)
            else:
                await warm.open_loop(config.rate, config.warmup)
            await outcomes.all_finished(
                [p.order_id for p in warm.placed if p.order_id is not None], config.give_up
            )
        meter = CpuMeter(stack)
        databases = [stack.database(s) for s in SERVICES]
        # First, as it may wait for the broker's counters to settle: the other readings
        # start the measured window, and the wait must not be in it.
        counts_before = await calibrate.settled_message_counts(vhost)
        received_before = outcomes.received
        cpu_before = meter.read()
        machine_before = procstat.machine_times()
        xact_before = await calibrate.committed_transactions(databases)

        accepted = 0

        def placed() -> None:
            nonlocal accepted
            accepted += 1

        driver = Driver(
            client, order_urls, products, outcomes, give_up=config.give_up, on_placed=placed
        )
        load = asyncio.create_task(
            driver.closed_loop(config.concurrency, config.seconds)
            if config.mode == "closed"
            else driver.open_loop(config.rate, config.seconds)
        )
        started = time.monotonic()
        while not load.done():
            elapsed = time.monotonic() - started
            finished = sum(1 for p in driver.placed if p.order_id in outcomes.seen)
            tick(
                f"load: {accepted} accepted, {finished} finished",
                min(elapsed, config.seconds),
                config.seconds,
            )
            await asyncio.wait({load}, timeout=0.5)
        await load
        ids = [p.order_id for p in driver.placed if p.order_id is not None]
        tick("draining", 0, 1)
        missing = await outcomes.all_finished(ids, config.give_up)
        cpu_after = meter.read()
        machine = procstat.machine_shares(machine_before, procstat.machine_times())
        xact_after = await calibrate.committed_transactions(databases)
        counts_after = await calibrate.settled_message_counts(vhost)
        received = outcomes.received - received_before
        peak = {
            name: procstat.peak_rss_mb(pid)
            for name, pid in meter.pids.items()
            if name in stack.instances()
        }
    finally:
        await outcomes.close()
        await streams.stop()

    tick("checking invariants", 0, 1)
    orders = await _wait_terminal(read, driver.customer, config.give_up)
    every_order = orders + (await customer_orders(read, warm.customer) if config.warmup > 0 else [])
    observed = config.saga_mode == "orchestration" or config.observer
    audit = await audit_orders(read, every_order, concurrency=16, observed=observed)
    after = await read("inventory_service", "/products")
    problems = audit.problems + stock_problems(
        after,
        every_order,
        supplied={pid: p["stock"] for pid, p in before.items()},
        reserved_before={pid: p["reserved"] for pid, p in before.items()},
    )
    figures = _figures(
        config,
        driver.placed,
        outcomes.seen,
        orders,
        missing,
        _measured(read.sagas, orders),
        cpu_before,
        cpu_after,
        machine,
        peak,
        problems,
        len(audit.doubled),
        dict(audit.attempts),
        xact_after - xact_before,
        # the system's own deliveries: not those to the benchmark's outcome queue
        (counts_after[0] - counts_before[0], counts_after[1] - counts_before[1] - received)
        if counts_after is not None and counts_before is not None
        else None,
    )
    if config.stream_subscribers:
        figures["stream"] = {
            "subscribers": config.stream_subscribers,
            "events_per_subscriber": streams.events,
            "reconnects": streams.drops,
        }
    return figures


def _measured(sagas: dict[str, Any], orders: list[dict[str, Any]]) -> dict[str, Any]:
    """The sagas of the measured orders (the reader also read the warm-up's)."""
    return {o["saga_id"]: sagas[o["saga_id"]] for o in orders if o.get("saga_id") in sagas}


async def _wait_terminal(read: Reader, customer: str, bound: float) -> list[dict[str, Any]]:
    """The order service applies the outcome event a moment after the benchmark sees it."""
    deadline = time.monotonic() + bound
    while True:
        orders = await customer_orders(read, customer)
        if all(o["status"] in TERMINAL for o in orders) or time.monotonic() > deadline:
            return orders
        await asyncio.sleep(0.5)


def _figures(
    config: Config,
    placed: list[Placed],
    seen: dict[str, tuple[str, float]],
    orders: list[dict[str, Any]],
    missing: list[str],
    sagas: dict[str, Any],
    cpu_before: dict[str, float],
    cpu_after: dict[str, float],
    machine: dict[str, float],
    peak: dict[str, float | None],
    problems: list[str],
    doubled: int,
    attempts: dict[str, int],
    transactions: int,
    messages: tuple[int, int] | None,
) -> dict[str, Any]:
    accepted = [p for p in placed if p.order_id is not None]
    finished = [p for p in accepted if p.order_id in seen]
    first = min((p.sent for p in placed), default=0.0)
    last = max((seen[p.order_id][1] for p in finished if p.order_id), default=first)
    span = max(last - first, 1e-9)
    latency = [(seen[p.order_id][1] - p.sent) * 1000 for p in finished if p.order_id]
    accept = [(p.accepted - p.sent) * 1000 for p in accepted if p.accepted is not None]
    steps: dict[str, list[float]] = {s: [] for s in STEPS}
    for saga in sagas.values():
        for step, state in saga["steps"].items():
            if step in steps and state.get("started_at") and state.get("finished_at"):
                began = datetime.fromisoformat(state["started_at"])
                ended = datetime.fromisoformat(state["finished_at"])
                steps[step].append((ended - began).total_seconds() * 1000)
    n = max(len(finished), 1)
    cpu = {name: (cpu_after.get(name, 0.0) - cpu_before.get(name, 0.0)) for name in cpu_after}
    return {
        "config": {
            "mode": config.mode,
            "seconds": config.seconds,
            "concurrency": config.concurrency if config.mode == "closed" else None,
            "offered_rate": config.rate if config.mode == "open" else None,
            "failure_rates": {
                "payment": config.payment_failure_rate,
                "shipping": config.shipping_failure_rate,
                "notification": config.notification_failure_rate,
            },
            "replicas": config.replicas,
            "saga_mode": config.saga_mode,
            "observer": config.observer if config.saga_mode == "choreography" else None,
            "tracing": config.tracing,
            "stream_subscribers": config.stream_subscribers,
            "cpus": os.cpu_count(),
        },
        "orders": {
            "offered": len(placed),
            "accepted": len(accepted),
            "rejected": len(placed) - len(accepted),
            "client_retries": sum(p.retries for p in placed),
            "finished": len(finished),
            "without_outcome": len(missing),
            "outcomes": dict(Counter(o["status"] for o in orders)),
            "rejections": sorted({p.rejected for p in placed if p.rejected})[:5],
        },
        "throughput_sagas_per_s": len(finished) / span,
        "span_s": span,
        "latency_ms": percentiles(latency),
        "accept_latency_ms": percentiles(accept),
        "step_ms": {s: percentiles(v) for s, v in steps.items()},
        "cpu_s_per_saga": {name: value / n for name, value in cpu.items()},
        "cpu_utilisation": {name: value / span for name, value in cpu.items()},
        "peak_rss_mb": peak,
        "machine_cpu": machine,
        "per_saga": {
            "transactions": transactions / n,
            "messages_published": (messages[0] / n) if messages is not None else None,
            "deliveries": (messages[1] / n) if messages is not None else None,
        },
        "invariants": {"problems": problems[:50], "problem_count": len(problems)},
        "sagas_doing_a_step_twice": doubled,
        "repeated_attempts": {
            status.value: attempts.get(status, 0) for status in sorted(REPEATABLE)
        },
    }


def _calibration(result: dict[str, Any], ceiling: calibrate.Ceiling) -> dict[str, Any]:
    per_saga = result["per_saga"]
    messages = per_saga["messages_published"]
    tx = per_saga["transactions"]
    # Both servers share the same two cores, so their costs add up per saga. Without the
    # message count (no management plugin) there is no honest ceiling to give.
    implied = None
    if messages is not None:
        seconds_per_saga = tx / ceiling.postgres_tx_per_s + messages / ceiling.rabbit_messages_per_s
        implied = 1 / seconds_per_saga if seconds_per_saga > 0 else None
    return {
        "rabbitmq_messages_per_s": ceiling.rabbit_messages_per_s,
        "postgresql_tx_per_s": ceiling.postgres_tx_per_s,
        "implied_ceiling_sagas_per_s": implied,
        "fraction_of_ceiling": (result["throughput_sagas_per_s"] / implied) if implied else None,
    }
