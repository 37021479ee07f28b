"""Metrics, logs and traces, read back exactly. A stack of its own (two orchestrator
replicas, so that counters add up across processes and the gauges read from the
database agree; JSON logs; traces exported over OTLP/HTTP to a receiver of the test's)
runs sagas with known outcomes. Then every process's /metrics is scraped by the test and
by a real Prometheus server, whose query API must give the same figures, each order's
story is rebuilt from the six services' log lines, and each order's trace from the
spans the six services exported."""

from __future__ import annotations

import json
import math
import re
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aio_pika
import pytest

from scripts.otlp_sink import OtlpSink, ReceivedSpan
from scripts.stack import SERVICES
from shared_domain.contracts import COMMANDS_EXCHANGE, EVENTS_EXCHANGE, Envelope, MessageType
from tests.e2e.conftest import LAPTOP, Api, line, own_stack, wait_for
from tests.metrics_support import PROMETHEUS, PrometheusServer, Sample, scrape, series, total

pytestmark = pytest.mark.e2e

ORCHESTRATOR_REPLICAS = 2
OBSERVABILITY = Path(__file__).resolve().parents[2] / "observability"
ALERTS = (
    "SagasStuck",
    "DeadLetterQueueNotEmpty",
    "OutboxBacklogStale",
    "CompensationRateHigh",
    "ServiceDown",
    "RabbitMQBlocked",
)
OUTCOMES = ("handled", "duplicate", "retried", "dead_lettered")
UUID_IN_PATH = re.compile(r"/[0-9a-f]{8}-[0-9a-f]{4}-")


# Secrets the stack is given, which must never show in a log line or a response.
SECRETS = {"DB_PASSWORD": "pg-secret-4d1c9e", "ADMIN_API_KEY": "admin-secret-77f0b2a9c3"}


@pytest.fixture(scope="module")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("observed-logs")


@pytest.fixture(scope="module")
async def sink() -> AsyncIterator[OtlpSink]:
    async with OtlpSink() as receiver:
        yield receiver


@pytest.fixture(scope="module")
async def observed(vhost: str, db_prefix: str, log_dir: Path, sink: OtlpSink) -> AsyncIterator[Api]:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": sink.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "100",  # ms: spans reach the receiver quickly
        **SECRETS,  # PostgreSQL trusts local connections: the password is only carried
        "LOG_FORMAT": "json",
    }
    async with own_stack(
        f"{vhost}_observed",
        f"{db_prefix}observed_",
        log_dir,
        env,
        {"saga_orchestrator": ORCHESTRATOR_REPLICAS},
        admin_key=SECRETS["ADMIN_API_KEY"],
    ) as api:
        yield api


async def settled(api: Api, order: dict[str, Any]) -> dict[str, Any]:
    """The order's saga once it is terminal and its last notification is done."""
    await api.wait_terminal(order["id"])

    async def done() -> dict[str, Any] | None:
        saga = await api.data("saga_orchestrator", f"/sagas/{order['saga_id']}")
        notice = saga["steps"]["notification"]["status"]
        return saga if notice in ("completed", "failed") else None

    saga: dict[str, Any] = await wait_for(done, f"the saga of order {order['id']} settling")
    return saga


async def metrics_of(api: Api, service: str) -> list[Sample]:
    return await scrape(api.client, [api.stack.url(i) for i in api.stack.instances(service)])


# The sagas the test runs, and what each leaves in the orchestrator's figures.
EXPECTED_INSTANCES = {"started": 6, "completed": 3, "cancelled": 3}
EXPECTED_FAILURES = {
    "payment_failed": 1,
    "inventory_failed": 1,
    "shipping_failed": 1,
    "notification_failed": 1,
}
EXPECTED_COMPENSATIONS = {"payment": 2, "inventory": 1}
EXPECTED_STEPS = {
    ("payment", "completed"): 5,
    ("payment", "failed"): 1,
    ("payment", "compensated"): 2,
    ("inventory", "completed"): 4,
    ("inventory", "failed"): 1,
    ("inventory", "compensated"): 1,
    ("shipping", "completed"): 3,
    ("shipping", "failed"): 1,
    # two confirmations, three cancellation notices; one confirmation failed
    ("notification", "completed"): 5,
    ("notification", "failed"): 1,
}


async def run_known_sagas(api: Api) -> None:
    await api.failure_rates()
    for _ in range(2):
        assert (await settled(api, await api.place([line(LAPTOP)])))["status"] == "completed"
    shortage = await settled(api, await api.place([line(LAPTOP, 1000)]))
    assert shortage["status"] == "cancelled"
    await api.failure_rates(payment=1.0)
    assert (await settled(api, await api.place([line(LAPTOP)])))["status"] == "cancelled"
    await api.failure_rates(shipping=1.0)
    assert (await settled(api, await api.place([line(LAPTOP)])))["status"] == "cancelled"
    await api.failure_rates(notification=1.0)
    noticed = await settled(api, await api.place([line(LAPTOP)]))
    assert noticed["status"] == "completed"
    assert noticed["steps"]["notification"]["status"] == "failed"


@pytest.fixture(scope="module")
async def prometheus(
    observed: Api, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[PrometheusServer | None]:
    """A real Prometheus scraping every process of the stack, with the alerting rules,
    from before the sagas run (None where the server is not installed)."""
    if PROMETHEUS is None:
        yield None
        return
    targets = {
        service: [f"127.0.0.1:{observed.stack.port(i)}" for i in observed.stack.instances(service)]
        for service in SERVICES
    }
    server = PrometheusServer(
        targets, tmp_path_factory.mktemp("prometheus"), rule_files=[OBSERVABILITY / "alerts.yml"]
    )
    async with server:

        async def all_up() -> bool:
            health = await server.targets_up()
            return len(health) == len(SERVICES) + ORCHESTRATOR_REPLICAS - 1 and all(
                h == "up" for h in health.values()
            )

        await wait_for(all_up, "prometheus scraping every process")
        yield server


@pytest.fixture(scope="module")
async def ran(observed: Api, prometheus: PrometheusServer | None) -> Api:
    await run_known_sagas(observed)
    if prometheus is not None:
        await prometheus.scraped_since(time.time())
    return observed


async def test_the_saga_figures_are_exact_across_orchestrator_replicas(ran: Api) -> None:
    samples = await metrics_of(ran, "saga_orchestrator")
    assert series(samples, "saga_instances_total", "event") == EXPECTED_INSTANCES
    assert series(samples, "saga_failures_total", "reason") == EXPECTED_FAILURES
    assert series(samples, "saga_compensation_total", "step") == EXPECTED_COMPENSATIONS
    steps = {
        (step, outcome): total(
            samples, "saga_step_duration_seconds_count", step=step, outcome=outcome
        )
        for step, outcome in EXPECTED_STEPS
    }
    assert steps == EXPECTED_STEPS
    assert total(samples, "saga_step_duration_seconds_count") == sum(EXPECTED_STEPS.values())
    assert series(samples, "saga_duration_seconds_count", "outcome") == {
        "completed": 3,
        "cancelled": 3,
    }
    # each replica reads the same figure from the database: none active
    active = [(labels, v) for n, labels, v in samples if n == "saga_instances_active"]
    assert len(active) == 2 * ORCHESTRATOR_REPLICAS
    assert all(v == 0 for _, v in active)
    assert total(samples, "saga_step_resends_total") == 0
    assert total(samples, "saga_step_deadlines_passed_total") == 0
    # both replicas did part of the work
    for instance in ran.stack.instances("saga_orchestrator"):
        own = await scrape(ran.client, [ran.stack.url(instance)])
        assert total(own, "messages_consumed_total", outcome="handled") > 0, instance


async def test_every_process_counts_its_requests_messages_and_publishes(ran: Api) -> None:
    order = await metrics_of(ran, "order_service")
    assert total(order, "http_requests_total", method="POST", route="/api/v1/orders") == 6
    assert (
        total(order, "http_requests_total", method="POST", route="/api/v1/orders", status="201")
        == 6
    )
    # the route's template, never the path asked for
    gets = total(order, "http_requests_total", method="GET", route="/api/v1/orders/{order_id}")
    assert gets >= 6
    routes = {dict(labels)["route"] for n, labels, _ in order if n == "http_requests_total"}
    assert not [r for r in routes if UUID_IN_PATH.search(r)], routes
    handled = [(n, labels, v) for n, labels, v in order if ("outcome", "handled") in labels]
    assert series(handled, "messages_consumed_total", "type") == {
        "order.processing": 6,
        "order.completed": 3,
        "order.cancelled": 3,
    }
    assert total(order, "messages_published_total", type="order.created") == 6

    # inventory ran throughout (payment, shipping and notification were restarted)
    inventory = await metrics_of(ran, "inventory_service")
    handled = [(n, labels, v) for n, labels, v in inventory if ("outcome", "handled") in labels]
    assert series(handled, "messages_consumed_total", "type") == {
        "inventory.reserve": 5,
        "inventory.release": 1,
    }
    assert series(inventory, "messages_published_total", "type") == {
        "inventory.reserved": 4,
        "inventory.failed": 1,
        "inventory.released": 1,
    }
    assert total(inventory, "message_handler_duration_seconds_count", type="inventory.reserve") >= 5

    for service in SERVICES:

        async def drained(service: str = service) -> list[Sample] | None:
            now = await metrics_of(ran, service)
            return now if total(now, "outbox_backlog_messages") == 0 else None

        samples = await wait_for(drained, f"{service}'s outbox backlog draining", timeout=5)
        assert total(samples, "outbox_oldest_age_seconds") == 0, service
        assert total(samples, "db_pool_connections_max", pool="writers") > 0, service
        assert total(samples, "metrics_refresh_failures_total") == 0, service


@pytest.mark.skipif(PROMETHEUS is None, reason="the prometheus server is not installed")
async def test_a_real_prometheus_scrapes_the_stack_and_answers_the_same(
    ran: Api, prometheus: PrometheusServer | None
) -> None:
    assert prometheus is not None
    assert await prometheus.value('sum(saga_instances_total{event="started"})') == 6
    assert await prometheus.value('sum(saga_instances_total{event="cancelled"})') == 3
    assert await prometheus.value("max(sum by (instance) (saga_instances_active))") == 0
    by_reason = await prometheus.query("sum by (reason) (saga_failures_total)")
    reasons = {r["metric"]["reason"]: float(r["value"][1]) for r in by_reason}
    assert {r: v for r, v in reasons.items() if v} == EXPECTED_FAILURES
    assert reasons["payment_timed_out"] == 0  # every known reason is there from the start
    assert (
        await prometheus.value(
            'sum(saga_step_duration_seconds_count{step="payment",outcome="compensated"})'
        )
        == 2
    )
    p95 = await prometheus.value(
        "histogram_quantile(0.95, sum by (le) (saga_step_duration_seconds_bucket))"
    )
    assert p95 is not None and 0 < p95 < 10
    assert (
        await prometheus.value(
            'sum(http_requests_total{job="order_service",route="/api/v1/orders",method="POST"})'
        )
        == 6
    )
    assert await prometheus.value('count(up{job="saga_orchestrator"} == 1)') == 2


DASHBOARD = OBSERVABILITY / "grafana" / "dashboards" / "order-saga.json"


@pytest.mark.skipif(PROMETHEUS is None, reason="the prometheus server is not installed")
async def test_every_dashboard_expression_and_alerting_rule_works_after_a_run(
    ran: Api, prometheus: PrometheusServer | None
) -> None:
    assert prometheus is not None
    dashboard = json.loads(DASHBOARD.read_text())
    expressions = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    assert len(expressions) >= 10
    empty = []
    for expr in expressions:
        result = await prometheus.query(expr)
        values = [float(r["value"][1]) for r in result]
        if not [v for v in values if not math.isnan(v)]:
            empty.append(expr)
    assert not empty, f"dashboard expressions that give nothing after a run: {empty}"
    rules = await prometheus.rules()
    assert sorted(r["name"] for r in rules) == sorted(ALERTS)
    assert all(r["health"] == "ok" for r in rules), rules
    # nothing is wrong with this stack, but for the dead letters a later test makes
    assert [r["name"] for r in rules if r["state"] != "inactive"] == []


async def test_a_dead_letter_and_a_duplicate_are_counted_as_such(ran: Api) -> None:
    before = await metrics_of(ran, "inventory_service")
    orders_before = await metrics_of(ran, "order_service")
    repeat = Envelope(  # about an order nobody placed: the service logs it and moves on
        type=MessageType.ORDER_PROCESSING.value,
        saga_id=uuid.uuid4(),
        order_id=uuid.uuid4(),
        correlation_id="metrics-test",
        source="saga_orchestrator",
    )
    connection = await aio_pika.connect(f"amqp://guest:guest@127.0.0.1:5672/{ran.vhost}")
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        commands = await channel.get_exchange(COMMANDS_EXCHANGE)
        await commands.publish(
            aio_pika.Message(b'{"not": "an envelope"}', message_id=str(uuid.uuid4())),
            routing_key="inventory.reserve",
        )
        events = await channel.get_exchange(EVENTS_EXCHANGE)
        for _ in range(2):  # the same message twice: the inbox drops the second
            await events.publish(
                aio_pika.Message(
                    repeat.model_dump_json().encode(), message_id=str(repeat.message_id)
                ),
                routing_key=repeat.type,
            )

    dlq = "inventory_service.commands.dlq"

    async def dead_lettered() -> list[Sample] | None:
        now = await metrics_of(ran, "inventory_service")
        return now if total(now, "dead_letter_queue_messages", queue=dlq) == 1 else None

    after = await wait_for(dead_lettered, "the poison message reaching its DLQ")
    counted = total(after, "messages_consumed_total", outcome="dead_lettered") - total(
        before, "messages_consumed_total", outcome="dead_lettered"
    )
    assert counted == 1
    # the orchestrator sees every dead-letter queue
    orchestrator = await scrape(ran.client, [ran.stack.url("saga_orchestrator")])
    assert total(orchestrator, "dead_letter_queue_messages", queue=dlq) == 1
    assert (
        total(orchestrator, "dead_letter_queue_messages", queue="payment_service.commands.dlq") == 0
    )

    def processing(samples: list[Sample], outcome: str) -> float:
        return total(samples, "messages_consumed_total", type="order.processing", outcome=outcome)

    async def both_taken() -> list[Sample] | None:
        now = await metrics_of(ran, "order_service")
        taken = sum(processing(now, o) - processing(orders_before, o) for o in OUTCOMES)
        return now if taken == 2 else None

    orders_after = await wait_for(both_taken, "the order service taking both copies")
    assert processing(orders_after, "handled") - processing(orders_before, "handled") == 1
    assert processing(orders_after, "duplicate") - processing(orders_before, "duplicate") == 1


# ---------------------------------------------------------------- logs


def log_lines(log_dir: Path) -> list[dict[str, Any]]:
    """Every line every process wrote, each parsed: all of them must be JSON objects."""
    lines = []
    for path in sorted(log_dir.glob("*.log")):
        for number, raw in enumerate(path.read_text().splitlines(), start=1):
            try:
                line = json.loads(raw)
            except ValueError:
                raise AssertionError(f"{path.name}:{number} is not JSON: {raw!r}") from None
            assert isinstance(line, dict), raw
            line["_file"] = path.name
            lines.append(line)
    return lines


def story(lines: list[dict[str, Any]], order_id: str) -> dict[str, list[str]]:
    """The messages logged about one order, by service."""
    told: dict[str, list[str]] = {}
    for entry in lines:
        if entry.get("order_id") == order_id:
            told.setdefault(entry["service"], []).append(entry["message"])
    return told


async def test_each_orders_story_is_told_by_all_six_services_in_json(
    ran: Api, log_dir: Path, sink: OtlpSink
) -> None:
    lines = log_lines(log_dir)
    for entry in lines:
        assert {"time", "level", "logger", "service", "message"} <= entry.keys(), entry
        assert entry["time"].endswith("+00:00"), entry["time"]  # UTC
        unreadable = entry["message"].startswith("dead-lettering message from")  # the poison
        if "message_id" in entry and not unreadable:  # a line about a message names all of it
            for key in ("saga_id", "order_id", "correlation_id", "message_type"):
                assert entry.get(key), (key, entry)

    completed, compensated = ran.placed[0], ran.placed[4]  # the shipping failure
    expected = {
        completed["id"]: {
            "order_service": ["placed by customer", "is now processing", "is now completed"],
            "saga_orchestrator": ["started for order", "-> saga completed"],
            "payment_service": ["completed"],
            "inventory_service": ["reserved"],
            "shipping_service": ["created"],
            "notification_service": ["order_confirmation notification sent"],
        },
        compensated["id"]: {
            "order_service": ["placed by customer", "is now cancelled (shipping failed"],
            "saga_orchestrator": [
                "shipping.failed -> saga compensating",
                "inventory.released -> saga compensating, next: payment.refund",
                "payment.refunded -> saga cancelled",
            ],
            "payment_service": ["completed", "refunded"],
            "inventory_service": ["reserved", "released"],
            "shipping_service": ["failed carrier_unavailable"],
            "notification_service": ["order_cancelled notification sent"],
        },
    }
    for order_id, by_service in expected.items():
        told = story(lines, order_id)
        assert sorted(told) == sorted(SERVICES), told
        # with tracing on, every line about the order names its trace, and a span of it
        about = [e for e in lines if e.get("order_id") == order_id]
        traced = await exported_trace(sink, order_id)
        span_ids = {s.span_id for s in sink.spans if s.attributes.get("order.id") == order_id}
        assert {e.get("trace_id") for e in about} == {traced}, about
        assert {e["span_id"] for e in about if e.get("message_id")} <= span_ids
        for service, phrases in by_service.items():
            for phrase in phrases:
                assert any(phrase in m for m in told[service]), (service, phrase, told[service])
    # the orchestrator's lines about it carry the saga, whichever replica wrote them
    mine = [e for e in lines if e.get("order_id") == compensated["id"]]
    assert {e["saga_id"] for e in mine if e["service"] == "saga_orchestrator"} == {
        compensated["saga_id"]
    }
    # the line of the POST that placed it names its request
    placed = [e for e in mine if "placed by customer" in e["message"]]
    assert len(placed) == 1 and placed[0]["request_id"]


async def test_no_secret_is_ever_logged_or_answered(ran: Api, log_dir: Path) -> None:
    texts = [json.dumps(e) for e in log_lines(log_dir)]
    for service in SERVICES:
        for path in ("/metrics", "/api/v1/health", "/openapi.json"):
            response = await ran.client.get(f"{ran.stack.url(service)}{path}")
            texts.append(response.text)
    texts.append((await ran.client.get(f"{ran.stack.url('saga_orchestrator')}/api/v1/sagas")).text)
    for name, secret in SECRETS.items():
        leaks = [t[max(0, t.find(secret) - 80) : t.find(secret) + 40] for t in texts if secret in t]
        assert not leaks, f"{name} leaked: {leaks}"


# ---------------------------------------------------------------- traces


def spans_of(sink: OtlpSink, order_id: str) -> list[ReceivedSpan]:
    return [s for s in sink.spans if s.attributes.get("order.id") == order_id]


async def exported_trace(sink: OtlpSink, order_id: str) -> str:
    """The order's trace id, once every service's spans of it have been received."""

    async def complete() -> bool:
        mine = spans_of(sink, order_id)
        return {s.service for s in mine if s.kind == "CONSUMER"} >= set(SERVICES)

    await wait_for(complete, f"the spans of order {order_id}", timeout=10)
    return trace_of(sink, order_id)


def trace_of(sink: OtlpSink, order_id: str) -> str:
    """The trace id of the order's `order.created` publish span (made in its POST)."""
    created = [s for s in spans_of(sink, order_id) if s.name == "publish order.created"]
    assert len(created) == 1, created
    return created[0].trace_id


async def test_one_order_is_one_trace_across_all_six_services(ran: Api, sink: OtlpSink) -> None:
    order = ran.placed[0]
    trace_id = await exported_trace(sink, order["id"])
    mine = spans_of(sink, order["id"])
    assert {s.trace_id for s in mine} == {trace_id}
    in_trace = [s for s in sink.spans if s.trace_id == trace_id]
    assert {s.service for s in in_trace} == set(SERVICES)
    # the POST's server span is the root; the publish of order.created its child
    (root,) = [s for s in in_trace if not s.parent_id]
    assert root.kind == "SERVER" and root.service == "order_service"
    assert root.attributes.get("http.route") == "/api/v1/orders"
    created = next(s for s in in_trace if s.name == "publish order.created")
    assert created.parent_id == root.span_id
    # the saga's steps, each a publish and a process span, with the conventions' attributes
    names = {s.name for s in in_trace}
    for message_type in ("payment.process", "inventory.reserve", "shipping.create"):
        assert {f"publish {message_type}", f"process {message_type}"} <= names, names
    process = next(s for s in in_trace if s.name == "process payment.process")
    assert process.kind == "CONSUMER" and process.service == "payment_service"
    assert process.attributes["messaging.system"] == "rabbitmq"
    assert process.attributes["messaging.destination.name"] == "saga.commands"
    assert process.attributes["messaging.rabbitmq.destination.routing_key"] == "payment.process"
    assert process.attributes["messaging.message.conversation_id"]
    assert process.attributes["saga.id"] == order["saga_id"]
    assert process.attributes["saga.outcome"] == "handled"


async def test_every_consumer_span_is_a_child_of_its_messages_publish_span(
    ran: Api, sink: OtlpSink
) -> None:
    ours = {o["id"] for o in ran.placed}

    async def parents_arrived() -> dict[str, ReceivedSpan] | None:
        producers = {s.span_id: s for s in sink.spans if s.kind == "PRODUCER"}
        consumers = [s for s in sink.spans if s.kind == "CONSUMER"]
        if all(c.parent_id in producers for c in consumers if c.attributes["order.id"] in ours):
            return producers
        return None

    producers = await wait_for(parents_arrived, "the publish spans of every message", timeout=10)
    consumers = [s for s in sink.spans if s.kind == "CONSUMER" and s.attributes["order.id"] in ours]
    assert len(consumers) > 6 * 10
    for consumer in consumers:
        parent = producers[consumer.parent_id]
        assert parent.trace_id == consumer.trace_id
        assert (
            parent.attributes["messaging.message.id"]
            == (consumer.attributes["messaging.message.id"])
        )
        assert parent.name == consumer.name.replace("process ", "publish ", 1)


def failed_attributes(sink: OtlpSink, order_id: str) -> dict[str, Any]:
    """The attributes of the span that handled the order's inventory.failed."""
    span = next(s for s in spans_of(sink, order_id) if s.name == "process inventory.failed")
    return span.attributes


async def test_a_shortage_orders_refund_is_in_its_trace(ran: Api, sink: OtlpSink) -> None:
    shortage = ran.placed[2]
    trace_id = trace_of(sink, shortage["id"])

    async def refunded() -> list[ReceivedSpan] | None:
        refund = [
            s
            for s in spans_of(sink, shortage["id"])
            if s.name in ("publish payment.refund", "process payment.refund")
        ]
        return refund if len(refund) == 2 else None

    refund = await wait_for(refunded, "the refund's spans", timeout=10)
    assert {s.trace_id for s in refund} == {trace_id}
    assert all(s.attributes["saga.compensation"] is True for s in refund)
    assert "saga.compensation" not in failed_attributes(sink, shortage["id"])
    process = next(s for s in refund if s.kind == "CONSUMER")
    assert process.service == "payment_service"
    failed = next(s for s in spans_of(sink, shortage["id"]) if s.name == "process inventory.failed")
    publish = next(s for s in refund if s.kind == "PRODUCER")
    assert publish.parent_id == failed.span_id  # the failure's handling sent the undo


async def test_a_saga_keeps_its_trace_across_an_orchestrator_killed_mid_saga(
    ran: Api, sink: OtlpSink
) -> None:
    """The orchestrators die with SIGKILL while the saga waits on its payment; the
    saga's later spans, made by the restarted processes, are still in its trace."""
    stack = ran.stack
    await stack.stop(["payment_service"])
    order = await ran.place([line(LAPTOP)])

    async def sent() -> bool:
        saga = await ran.data("saga_orchestrator", f"/sagas/{order['saga_id']}")
        return saga is not None and saga["steps"]["payment"]["status"] == "in_progress"

    await wait_for(sent, "the saga sending its payment command")

    async def exported() -> bool:
        return any(s.name == "process order.created" for s in spans_of(sink, order["id"]))

    await wait_for(exported, "the saga's first spans reaching the receiver", timeout=10)
    trace_id = trace_of(sink, order["id"])
    stack.kill("saga_orchestrator")
    killed_at = time.time_ns()
    await stack.start(["payment_service"])
    await stack.start(["saga_orchestrator"])
    await settled(ran, order)

    async def later() -> list[ReceivedSpan] | None:
        after = [
            s
            for s in spans_of(sink, order["id"])
            if s.service == "saga_orchestrator" and s.start_ns > killed_at
        ]
        done = {"process notification.sent", "process notification.failed"}
        return after if any(s.name in done for s in after) else None

    after = await wait_for(later, "the restarted orchestrator's spans", timeout=15)
    assert {s.trace_id for s in after} == {trace_id}
    assert any(s.name == "process payment.processed" for s in after)
