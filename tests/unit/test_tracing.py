"""Trace context through messages: a publish span whose context the message's headers
carry, and the process span that continues it (shared_domain.tracing)."""

from __future__ import annotations

import uuid

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from shared_domain import tracing
from shared_domain.contracts import Envelope

pytestmark = pytest.mark.usefixtures("spans")


def envelope(type_: str = "payment.process") -> Envelope:
    return Envelope(
        type=type_,
        saga_id=uuid.uuid4(),
        order_id=uuid.uuid4(),
        correlation_id="corr-7",
        source="test",
    )


def test_a_published_message_carries_its_publish_spans_context(
    spans: InMemorySpanExporter,
) -> None:
    message = envelope()
    with tracing.TRACER.start_as_current_span("POST /api/v1/orders") as request:
        headers = tracing.publish_span(message, "saga.commands")
    publish, root = spans.get_finished_spans()
    assert publish.name == "publish payment.process"
    assert publish.kind is SpanKind.PRODUCER
    assert publish.parent is not None and publish.parent.span_id == root.context.span_id
    assert root.context.span_id == request.get_span_context().span_id
    trace_id, span_id = f"{publish.context.trace_id:032x}", f"{publish.context.span_id:016x}"
    version, carried_trace, carried_span, flags = headers["traceparent"].split("-")
    assert (version, carried_trace, carried_span) == ("00", trace_id, span_id)
    assert int(flags, 16) & 1  # sampled
    attributes = dict(publish.attributes or {})
    assert attributes == {
        "messaging.system": "rabbitmq",
        "messaging.operation.type": "send",
        "messaging.operation.name": "publish",
        "messaging.destination.name": "saga.commands",
        "messaging.rabbitmq.destination.routing_key": "payment.process",
        "messaging.message.id": str(message.message_id),
        "messaging.message.conversation_id": "corr-7",
        "saga.id": str(message.saga_id),
        "order.id": str(message.order_id),
    }


def test_the_consumer_continues_the_trace_of_the_message(
    spans: InMemorySpanExporter,
) -> None:
    message = envelope("payment.refund")
    headers = tracing.publish_span(message, "saga.commands")
    with tracing.process_span(message, headers, "saga.commands") as span:
        inner = tracing.publish_span(envelope("payment.refunded"), "saga.events")
        tracing.failed("retried", "ConnectionError: database went away")
        assert span.is_recording()
    publish, reply, process = spans.get_finished_spans()
    assert process.kind is SpanKind.CONSUMER
    assert process.name == "process payment.refund"
    assert process.parent is not None and process.parent.span_id == publish.context.span_id
    assert process.context.trace_id == publish.context.trace_id
    assert (process.attributes or {})["saga.compensation"] is True
    assert process.status.status_code is StatusCode.ERROR
    assert process.status.description == "retried: ConnectionError: database went away"
    # what the handler emits is a child of its process span
    assert reply.parent is not None and reply.parent.span_id == process.context.span_id
    assert inner["traceparent"].split("-")[1] == f"{publish.context.trace_id:032x}"


def test_a_message_without_context_starts_a_trace_of_its_own(
    spans: InMemorySpanExporter,
) -> None:
    with tracing.process_span(envelope(), {"x-retry-count": 2}, "saga.commands"):
        pass
    (process,) = spans.get_finished_spans()
    assert process.parent is None


def test_work_on_a_saga_continues_its_trace_linked_to_the_request(
    spans: InMemorySpanExporter,
) -> None:
    with tracing.TRACER.start_as_current_span("order.created"):
        saga_trace = tracing.carrier_of_current()
    with (
        tracing.TRACER.start_as_current_span("POST /api/v1/sagas/{saga_id}/retry"),
        tracing.continued("saga saga.retry", saga_trace, {"saga.id": "s"}),
    ):
        pass
    started, retry, request = spans.get_finished_spans()
    assert retry.context.trace_id == started.context.trace_id
    assert retry.parent is not None and retry.parent.span_id == started.context.span_id
    assert [link.context.span_id for link in retry.links] == [request.context.span_id]


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "true"}, False),
    ],
)
def test_spans_are_exported_only_when_an_endpoint_is_set(
    environ: dict[str, str], expected: bool
) -> None:
    assert tracing.exporting(environ) is expected
