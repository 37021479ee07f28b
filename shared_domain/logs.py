"""Log lines that say which order they are about.

Two formats (LOG_FORMAT): `text`, readable lines that name the service (the local
default), and `json`, one JSON object a line (python-json-logger) for a log pipeline.
Either way every record made while a message is handled carries that message's
`saga_id`, `order_id`, `message_id`, `correlation_id` and `message_type`, every record
made while a request is served its `request_id`, and, when tracing is on, every record
made inside a span its `trace_id` and `span_id`: they are bound in a context
variable (`bind`) and copied onto each record by a filter, so no call site passes them.
In JSON they are fields; the text format leaves them out, its lines name the order
already.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from types import MappingProxyType

from opentelemetry import trace
from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

from shared_domain.contracts import Envelope

_bound: ContextVar[Mapping[str, str]] = ContextVar("log_fields", default=MappingProxyType({}))
# The message being handled, bound as it is: its fields are only worked out for a record
# (every message passes through here, and most make one or two records at most).
_message: ContextVar[Envelope | None] = ContextVar("log_message", default=None)


def fields() -> Mapping[str, str]:
    """What is bound now (to carry over to a record made later, elsewhere), with the
    current span's trace and span ids when one is recording."""
    message = _message.get()
    span = trace.get_current_span().get_span_context()
    if message is None and not span.is_valid:
        return _bound.get()
    found = {**_bound.get(), **(message_fields(message) if message is not None else {})}
    if span.is_valid:
        found["trace_id"] = format(span.trace_id, "032x")
        found["span_id"] = format(span.span_id, "016x")
    return found


@contextlib.contextmanager
def bind(**values: str | None) -> Iterator[None]:
    """Add fields to every record made inside the block (and in tasks it starts)."""
    token = _bound.set({**_bound.get(), **{k: v for k, v in values.items() if v is not None}})
    try:
        yield
    finally:
        _bound.reset(token)


def message_fields(envelope: Envelope) -> dict[str, str]:
    return {
        "saga_id": str(envelope.saga_id),
        "order_id": str(envelope.order_id),
        "message_id": str(envelope.message_id),
        "correlation_id": envelope.correlation_id,
        "message_type": envelope.type,
    }


@contextlib.contextmanager
def bind_message(envelope: Envelope) -> Iterator[None]:
    """Add the message's ids to every record made inside the block."""
    token = _message.set(envelope)
    try:
        yield
    finally:
        _message.reset(token)


class _BoundFields(logging.Filter):
    """Copies the bound fields onto each record, unless the record has them already
    (a line logged on commit carries those of the message it is about)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in fields().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


def _formatter(service: str, log_format: str) -> logging.Formatter:
    if log_format == "json":
        return JsonFormatter(
            "%(levelname)s %(name)s %(message)s",
            rename_fields={"levelname": "level", "name": "logger"},
            static_fields={"service": service},
            timestamp="time",  # ISO 8601, UTC
            json_ensure_ascii=False,
            # uvicorn's copy of its message with terminal colours in it
            reserved_attrs=[*RESERVED_ATTRS, "color_message"],
        )
    text = logging.Formatter(
        f"%(asctime)s %(levelname)-7s [{service}] %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    text.converter = time.gmtime
    return text


def configure_logging(service: str, level: str = "INFO", log_format: str = "text") -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(_formatter(service, log_format))
    handler.addFilter(_BoundFields())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aio-pika/aiormq are chatty at INFO about reconnects; keep their warnings.
    for noisy in ("aiormq", "aio_pika", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
