"""OpenTelemetry tracing: one order is one trace across the six processes.

The POST that places an order starts the trace (FastAPI's own telemetry makes the
server span). Every message a handler emits gets a PRODUCER span, and that span's W3C
trace context (`traceparent`, `tracestate`) goes into the message's AMQP headers, which
the outbox stores with the row: a message the sweep publishes after a crash, or another
replica publishes, still joins its trace. Every consumer continues the trace of the
message it handles with a CONSUMER span whose parent is that PRODUCER span. Span names
and attributes follow OpenTelemetry's messaging conventions for RabbitMQ, and every
span carries `saga.id` and `order.id`.

Spans are exported over OTLP/HTTP only when the standard `OTEL_EXPORTER_OTLP_ENDPOINT`
(or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set; the SDK reads the other standard
variables itself (`OTEL_SERVICE_NAME`, `OTEL_TRACES_SAMPLER`, `OTEL_BSP_*`, ...). With
neither set no provider is installed and every span is the API's no-op span.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode

from shared_domain.contracts import Envelope, MessageType

log = logging.getLogger(__name__)

TRACER = trace.get_tracer("order_saga")  # a proxy: it follows the provider set later
# Whether spans are recorded at all. Off, the message paths skip them entirely (every
# message passes through them): no attributes built, no context attached.
_active = False

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
SYSTEM = "rabbitmq"

# The undo commands and their replies: a compensation's spans say they are one.
COMPENSATIONS = frozenset(
    t.value
    for t in (
        MessageType.PAYMENT_REFUND,
        MessageType.PAYMENT_REFUNDED,
        MessageType.PAYMENT_REFUND_FAILED,
        MessageType.INVENTORY_RELEASE,
        MessageType.INVENTORY_RELEASED,
        MessageType.INVENTORY_RELEASE_FAILED,
        MessageType.SHIPPING_CANCEL,
        MessageType.SHIPPING_CANCELLED,
        MessageType.SHIPPING_CANCEL_FAILED,
    )
)


def exporting(environ: Mapping[str, str] = os.environ) -> bool:
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return any(environ.get(name) for name in ENDPOINT_VARIABLES)


def configure_tracing(service: str) -> None:
    """Install the SDK's tracer provider with an OTLP/HTTP exporter, if one is asked
    for. `service` names the process unless OTEL_SERVICE_NAME does."""
    if not exporting():
        return
    # Imported here: a process that does not export never loads the SDK.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    named = {} if os.environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: service}
    provider = TracerProvider(resource=Resource.create(named))  # sampler: OTEL_TRACES_SAMPLER
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    global TRACER, _active
    TRACER = provider.get_tracer("order_saga")  # the SDK's own, not through the proxy
    _active = True
    log.info("exporting traces over OTLP/HTTP as %s", provider.resource.attributes[SERVICE_NAME])


def shutdown() -> None:
    """Export what is still buffered (a clean stop; a killed process loses it)."""
    provider = trace.get_tracer_provider()
    stop = getattr(provider, "shutdown", None)
    if stop is not None:
        with contextlib.suppress(Exception):
            stop()


def _attributes(envelope: Envelope, exchange: str, operation: str) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "messaging.system": SYSTEM,
        "messaging.operation.type": "send" if operation == "publish" else "process",
        "messaging.operation.name": operation,
        "messaging.destination.name": exchange,
        "messaging.rabbitmq.destination.routing_key": envelope.type,
        "messaging.message.id": str(envelope.message_id),
        "messaging.message.conversation_id": envelope.correlation_id,
        "saga.id": str(envelope.saga_id),
        "order.id": str(envelope.order_id),
    }
    if envelope.type in COMPENSATIONS:  # set only where true: every attribute is exported
        attributes["saga.compensation"] = True
    return attributes


def publish_span(envelope: Envelope, exchange: str) -> dict[str, str]:
    """A PRODUCER span for a message being emitted (it goes to the outbox now, to the
    broker after the commit), as a child of the current span; returns the headers that
    carry its context. None are returned when nothing is sampled or exported."""
    if not _active:
        return {}
    span = TRACER.start_span(
        f"publish {envelope.type}",
        kind=SpanKind.PRODUCER,
        attributes=_attributes(envelope, exchange, "publish"),
    )
    carrier: dict[str, str] = {}
    if span.get_span_context().is_valid:
        propagate.inject(carrier, context=trace.set_span_in_context(span))
    span.end()
    return carrier


@contextlib.contextmanager
def process_span(envelope: Envelope, headers: Mapping[str, Any], exchange: str) -> Iterator[Span]:
    """The CONSUMER span a message is handled in, continuing the trace its headers carry
    (the PRODUCER span of whoever emitted it), current for the block."""
    if not _active:
        yield trace.INVALID_SPAN
        return
    parent = propagate.extract({k: v for k, v in headers.items() if isinstance(v, str)})
    with TRACER.start_as_current_span(
        f"process {envelope.type}",
        context=parent,
        kind=SpanKind.CONSUMER,
        attributes=_attributes(envelope, exchange, "process"),
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        yield span


def failed(outcome: str, error: str) -> None:
    """Mark the current span failed: what became of its message, and why."""
    trace.get_current_span().set_status(Status(StatusCode.ERROR, f"{outcome}: {error}"[:500]))


def current_context() -> otel_context.Context:
    return otel_context.get_current()


@contextlib.contextmanager
def attached(ctx: otel_context.Context) -> Iterator[None]:
    """Make `ctx` current for the block (a batch's task runs a consumer's message)."""
    if not _active:  # nothing in it to continue
        yield
        return
    token = otel_context.attach(ctx)
    try:
        yield
    finally:
        otel_context.detach(token)


def carrier_of_current() -> dict[str, str]:
    """The current span's context as W3C headers (kept with a saga, to continue its
    trace from the deadline watcher or an operator's action)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


@contextlib.contextmanager
def continued(
    name: str, carrier: Mapping[str, str] | None, attributes: Mapping[str, str]
) -> Iterator[Span]:
    """An INTERNAL span in the trace `carrier` names, linked to whatever span is current
    (an operator's request): the saga's trace shows what was done to it."""
    here = trace.get_current_span().get_span_context()
    links = [Link(here)] if here.is_valid else []
    parent = propagate.extract(dict(carrier or {}))
    with TRACER.start_as_current_span(
        name, context=parent, links=links, attributes=attributes
    ) as span:
        yield span
