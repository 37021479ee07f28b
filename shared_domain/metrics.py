"""The Prometheus metrics every process exposes at `GET /metrics` (prometheus-client's
default registry, so the process and GC collectors come along).

Counters and histograms are kept in process memory: a replica counts what it did, and
Prometheus adds the replicas up (`sum`). Gauges of shared state (the outbox backlog, a
dead-letter queue's depth, the orchestrator's active sagas) are read from PostgreSQL or
RabbitMQ when scraped, so every replica reports the same figure: take `max`, not `sum`.
docs/observability.md lists every metric with its labels.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable
from uuid import UUID

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.exposition import generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

# No `_created` series beside every counter and histogram: Prometheus does not need them
# and they would double the page.
disable_created_metrics()

# Seconds: from a millisecond's work to a step that waits out its timeouts.
LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
)

HTTP_REQUESTS = Counter(
    "http_requests_total",
    "HTTP requests answered, by method, route template and status code.",
    ["method", "route", "status"],
)
HTTP_DURATION = Histogram(
    "http_request_duration_seconds",
    "Time from a request's arrival to the end of its response, by method, route and status.",
    ["method", "route", "status"],
    buckets=LATENCY_BUCKETS,
)

MESSAGES_CONSUMED = Counter(
    "messages_consumed_total",
    "Messages taken off the process's queue, by type and outcome: handled, duplicate "
    "(the inbox had it already), retried (scheduled again after a failure or an outage) "
    "or dead_lettered.",
    ["queue", "type", "outcome"],
)
HANDLER_DURATION = Histogram(
    "message_handler_duration_seconds",
    "Time from a message's delivery to its outcome (the handler, its transaction's commit "
    "and the publish of what it emitted), by type and outcome.",
    ["type", "outcome"],
    buckets=LATENCY_BUCKETS,
)
MESSAGES_PUBLISHED = Counter(
    "messages_published_total",
    "Messages the outbox relay published and the broker confirmed, by exchange and type "
    "(a row the sweep publishes again after a crash counts again).",
    ["exchange", "type"],
)

OUTBOX_BACKLOG = Gauge(
    "outbox_backlog_messages",
    "Outbox rows due and not yet published, left to the sweep: the post-commit publish "
    "failed, their process died, or a scheduled message's time has come.",
)
OUTBOX_OLDEST_AGE = Gauge(
    "outbox_oldest_age_seconds",
    "How long the oldest of those rows has been due (0 when there is none).",
)
DB_POOL_IN_USE = Gauge(
    "db_pool_connections_in_use",
    "Database connections checked out of the pool: writers (message handlers and "
    "commands) or readers (queries and health checks).",
    ["pool"],
)
BROKER_BLOCKED = Gauge(
    "rabbitmq_connection_blocked",
    "1 while RabbitMQ blocks the process's connection (a memory or disk alarm: it reads "
    "nothing the process sends, publishes and acks alike), else 0.",
)
BROKER_BLOCKS = Counter(
    "rabbitmq_connection_blocks_total", "Times RabbitMQ blocked the process's connection."
)
BREAKER_STATE = Gauge(
    "circuit_breaker_state",
    "A provider's circuit breaker: 0 closed, 1 open (calls wait), 2 half open (a probe).",
    ["breaker"],
)
BREAKER_OPENED = Counter("circuit_breaker_opened_total", "Times the breaker opened.", ["breaker"])
BREAKER_REFUSED = Counter(
    "circuit_breaker_refused_total",
    "Calls the breaker kept from the provider while open; their work waits in the retry queue.",
    ["breaker"],
)
DB_POOL_MAX = Gauge("db_pool_connections_max", "The pool's size limit.", ["pool"])
DEAD_LETTERS = Gauge(
    "dead_letter_queue_messages",
    "Messages waiting in a dead-letter queue the process can see.",
    ["queue"],
)
SCRAPE_FAILURES = Counter(
    "metrics_refresh_failures_total",
    "Scrape-time readings that failed (their gauges keep the last value read).",
    ["reading"],
)

# How long one scrape-time reading may take before the scrape answers without it.
READING_TIMEOUT = 2.0

Reading = Callable[[], Awaitable[None]]


class Outcomes:
    """Duplicates the inbox found, by message id, for the consumer to count: the
    handler that learns it may run in a batch's task, not the consumer's."""

    def __init__(self, limit: int = 10_000) -> None:
        self._duplicates: set[UUID] = set()
        self._limit = limit

    def duplicate(self, message_id: UUID) -> None:
        if len(self._duplicates) >= self._limit:  # ids no consumer took: not ours to keep
            self._duplicates.clear()
        self._duplicates.add(message_id)

    def was_duplicate(self, message_id: UUID) -> bool:
        if message_id in self._duplicates:
            self._duplicates.discard(message_id)
            return True
        return False


OUTCOMES = Outcomes()


async def refresh(readings: dict[str, Reading]) -> None:
    """Take every scrape-time reading at once, each bounded by READING_TIMEOUT."""

    async def take(name: str, reading: Reading) -> None:
        try:
            await asyncio.wait_for(reading(), READING_TIMEOUT)
        except Exception as exc:
            SCRAPE_FAILURES.labels(name).inc()
            log.warning("metrics: reading %s failed: %s", name, exc)

    await asyncio.gather(*(take(name, reading) for name, reading in readings.items()))


def exposition() -> tuple[bytes, str]:
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


UNMATCHED = "unmatched"  # a path no route matched: one series, whatever was asked


def route_template(scope: Scope) -> str:
    """The matched route's path template with the prefix it was included under: the
    route knows only its own part (`/orders/{order_id}`), so the prefix is what of the
    path comes before the part the route's pattern matched."""
    route = scope.get("route")
    own = getattr(route, "path", None)
    pattern = getattr(route, "path_regex", None)
    if own is None or pattern is None:
        return UNMATCHED
    path: str = scope["path"]
    tail = re.search(pattern.pattern.removeprefix("^"), path)
    return (path[: tail.start()] if tail else "") + own


class HttpMetricsMiddleware:
    """Counts and times every HTTP request by its route's template (`/orders/{order_id}`,
    never the path itself), outermost so that the status is the one the client got."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            labels = (scope["method"], route_template(scope), str(status))
            HTTP_REQUESTS.labels(*labels).inc()
            HTTP_DURATION.labels(*labels).observe(time.perf_counter() - started)
