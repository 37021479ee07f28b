"""The transactional outbox against the real PostgreSQL and RabbitMQ."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import func, select

from payment_service.tables import outbox
from shared_domain import tracing
from shared_domain.contracts import EVENTS_EXCHANGE, Envelope, MessageType
from shared_domain.db import UnitOfWork
from shared_domain.outbox import OutboxRelay
from tests.integration.conftest import capture

pytestmark = pytest.mark.integration


def event(order_id: uuid.UUID | None = None) -> Envelope:
    return Envelope(
        type=MessageType.PAYMENT_FAILED.value,
        saga_id=uuid.uuid4(),
        order_id=order_id or uuid.uuid4(),
        correlation_id="test",
        source="test",
        payload={"reason": "card_declined"},
    )


async def outbox_count(rt) -> int:
    async with rt.engine.connect() as conn:
        return (await conn.execute(select(func.count()).select_from(outbox))).scalar_one()


async def test_commit_publishes_at_once_and_empties_the_outbox(payment_rt, channel):
    captured = await capture(channel, EVENTS_EXCHANGE, MessageType.PAYMENT_FAILED.value)
    envelope = event()
    async with payment_rt.uow() as uow:
        uow.emit(envelope)
        await uow.commit()

    message = await captured.next(timeout=2)
    assert message.message_id == str(envelope.message_id)
    assert message.delivery_mode == 2  # persistent
    assert message.content_type == "application/json"
    assert Envelope.model_validate_json(message.body) == envelope
    assert await outbox_count(payment_rt) == 1, "the row goes with the cleaner's next batch"
    assert await payment_rt.relay.delete_published() == 1
    assert await outbox_count(payment_rt) == 0
    assert await payment_rt.relay.sweep_once() == 0


async def test_a_published_row_the_cleaner_has_not_reached_is_not_sent_again(payment_rt, channel):
    captured = await capture(channel, EVENTS_EXCHANGE, MessageType.PAYMENT_FAILED.value)
    uow = UnitOfWork(payment_rt.pool, payment_rt.relay, outbox_grace=0)
    async with uow:
        uow.emit(event())
        await uow.commit()
    await captured.next(timeout=2)
    assert await payment_rt.relay.sweep_once() == 0
    assert await captured.nothing_within(0.3)
    assert await outbox_count(payment_rt) == 0


async def test_rollback_publishes_nothing(payment_rt, channel):
    captured = await capture(channel, EVENTS_EXCHANGE, MessageType.PAYMENT_FAILED.value)
    with pytest.raises(RuntimeError):
        async with payment_rt.uow() as uow:
            uow.emit(event())
            raise RuntimeError("handler failed before commit")
    assert await captured.nothing_within(0.5)
    assert await outbox_count(payment_rt) == 0


async def test_sweep_publishes_what_a_crash_left_behind(payment_rt, channel):
    """The process 'dies' between commit and publish: the row stays, the sweep sends it."""
    captured = await capture(channel, EVENTS_EXCHANGE, MessageType.PAYMENT_FAILED.value)
    envelope = event()
    uow = UnitOfWork(payment_rt.pool, None, outbox_grace=0.3)
    async with uow:
        uow.emit(envelope)
        await uow.commit()
    assert await outbox_count(payment_rt) == 1
    assert await payment_rt.relay.sweep_once() == 0, "the grace period protects the fast path"

    await asyncio.sleep(0.4)
    assert await payment_rt.relay.sweep_once() == 1
    message = await captured.next(timeout=2)
    assert message.message_id == str(envelope.message_id)
    assert await outbox_count(payment_rt) == 0


async def test_a_row_the_sweep_publishes_after_a_crash_keeps_its_trace(payment_rt, channel, spans):
    """The row holds the trace context of the span that emitted it: published by the
    sweep (of this process after a restart, or of another replica), it joins that trace."""
    captured = await capture(channel, EVENTS_EXCHANGE, MessageType.PAYMENT_FAILED.value)
    with tracing.TRACER.start_as_current_span("process payment.process") as handling:
        uow = UnitOfWork(payment_rt.pool, None, outbox_grace=0)  # dies before publishing
        async with uow:
            uow.emit(event())
            await uow.commit()
    assert await payment_rt.relay.sweep_once() == 1
    message = await captured.next(timeout=2)
    _, trace_id, span_id, _ = str(message.headers["traceparent"]).split("-")
    publish = next(s for s in spans.get_finished_spans() if s.name == "publish payment.failed")
    assert span_id == f"{publish.context.span_id:016x}"
    assert trace_id == f"{handling.get_span_context().trace_id:032x}"
    assert publish.parent.span_id == handling.get_span_context().span_id


async def test_delayed_message_waits_for_its_time(payment_rt, channel):
    captured = await capture(channel, EVENTS_EXCHANGE, MessageType.PAYMENT_FAILED.value)
    async with payment_rt.uow() as uow:
        uow.emit(event(), delay=0.6)
        await uow.commit()
    assert await captured.nothing_within(0.3)
    assert await payment_rt.relay.sweep_once() == 0
    await asyncio.sleep(0.4)
    assert await payment_rt.relay.sweep_once() == 1
    await captured.next(timeout=2)


async def test_concurrent_sweeps_publish_each_message_exactly_once(payment_rt, channel):
    captured = await capture(channel, EVENTS_EXCHANGE, MessageType.PAYMENT_FAILED.value)
    sent = set()
    for _ in range(4):
        uow = UnitOfWork(payment_rt.pool, None, outbox_grace=0)
        async with uow:
            for _ in range(50):
                envelope = event()
                sent.add(str(envelope.message_id))
                uow.emit(envelope)
            await uow.commit()

    relays = [
        OutboxRelay(payment_rt.pool, payment_rt.broker, sweep_interval=0.05, batch_size=20)
        for _ in range(3)
    ]

    async def drain(relay: OutboxRelay) -> int:
        total = 0
        while (n := await relay.sweep_once()) > 0:
            total += n
        return total

    counts = await asyncio.gather(*(drain(r) for r in relays))
    assert sum(counts) == len(sent) == 200

    received = [str((await captured.next(timeout=5)).message_id) for _ in range(200)]
    assert sorted(received) == sorted(sent)
    assert await captured.nothing_within(0.5)
    assert await outbox_count(payment_rt) == 0


async def test_rows_written_with_the_commit_keep_every_value_exactly(payment_rt):
    # The outbox rows go in with COMMIT as one simple query, values written in as
    # literals: text that would break naive quoting must come back byte for byte.
    awkward = "x'); DROP TABLE outbox; -- \\' \" ünï \U0001f600 \\x00"
    envelopes = [
        event().model_copy(update={"correlation_id": awkward, "payload": {"note": awkward}}),
        event(),
    ]
    uow = UnitOfWork(payment_rt.pool, None, outbox_grace=60)  # left for the sweep
    async with uow:
        for envelope in envelopes:
            uow.emit(envelope)
        await uow.commit()
    async with payment_rt.uow() as read:
        rows = {
            r["id"]: r
            for r in await read.conn.fetch(
                "SELECT id, exchange, routing_key, message_type, correlation_id, body, "
                "headers, created_at, available_at FROM outbox"
            )
        }
    assert set(rows) == {e.message_id for e in envelopes}
    for staged, envelope in zip(uow.staged, envelopes, strict=True):
        row, m = rows[envelope.message_id], staged.message
        assert (row["exchange"], row["routing_key"], row["message_type"]) == (
            m.exchange,
            m.routing_key,
            m.message_type,
        )
        assert row["correlation_id"] == envelope.correlation_id
        assert bytes(row["body"]) == m.body
        assert Envelope.model_validate_json(row["body"]) == envelope
        assert row["headers"] == dict(m.headers)
        assert row["available_at"] == staged.available_at
        assert row["created_at"].tzinfo is not None
