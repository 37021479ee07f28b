"""The two log formats, and the ids a line carries without its call site passing them."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator

import pytest

from shared_domain import logs
from shared_domain.contracts import Envelope

log = logging.getLogger("tests.logs")


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def envelope() -> Envelope:
    return Envelope(
        type="payment.process",
        saga_id=uuid.uuid4(),
        order_id=uuid.uuid4(),
        correlation_id="corr-1",
        source="test",
    )


def lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return capsys.readouterr().out.splitlines()


def test_json_lines_carry_the_bound_message_and_request(
    restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    logs.configure_logging("payment_service", "INFO", "json")
    message = envelope()
    with logs.bind(request_id="req-1"), logs.bind_message(message):
        log.info("charged %s", "42.00")
    log.info("outside")
    inside, outside = (json.loads(line) for line in lines(capsys))
    assert inside["message"] == "charged 42.00"
    assert inside["service"] == "payment_service"
    assert inside["level"] == "INFO" and inside["logger"] == "tests.logs"
    assert inside["time"].endswith("+00:00")
    assert inside["request_id"] == "req-1"
    assert inside["saga_id"] == str(message.saga_id)
    assert inside["order_id"] == str(message.order_id)
    assert inside["message_id"] == str(message.message_id)
    assert inside["correlation_id"] == "corr-1"
    assert inside["message_type"] == "payment.process"
    assert "order_id" not in outside and "request_id" not in outside


def test_a_record_keeps_the_ids_it_was_given(
    restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """A line logged after a batch's commit carries its own message's ids, not those
    bound at the time it is written."""
    logs.configure_logging("order_service", "INFO", "json")
    first, second = envelope(), envelope()
    with logs.bind_message(first):
        kept = dict(logs.fields())
    with logs.bind_message(second):
        log.info("about the first", extra=kept)
    (line,) = (json.loads(raw) for raw in lines(capsys))
    assert line["order_id"] == str(first.order_id)


def test_text_lines_name_the_service_and_leave_the_ids_out(
    restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    logs.configure_logging("inventory_service", "INFO", "text")
    with logs.bind_message(envelope()):
        log.warning("stock low")
    (line,) = lines(capsys)
    assert " WARNING [inventory_service] tests.logs: stock low" in line
    assert "saga_id" not in line


def test_a_line_inside_a_span_names_its_trace_and_span(
    restore_logging: None, capsys: pytest.CaptureFixture[str], spans: object
) -> None:
    from shared_domain import tracing

    logs.configure_logging("payment_service", "INFO", "json")
    with tracing.TRACER.start_as_current_span("process payment.process") as span:
        log.info("charged")
    log.info("no span")
    inside, outside = (json.loads(line) for line in lines(capsys))
    context = span.get_span_context()
    assert inside["trace_id"] == f"{context.trace_id:032x}"
    assert inside["span_id"] == f"{context.span_id:016x}"
    assert "trace_id" not in outside
