"""Consuming with explicit acknowledgement tied to the outcome.

- handled and committed: ack;
- can never be processed (larger than the limit, not JSON, failed validation, unknown
  type, a sender other than the type's, PermanentError): republished to the dead-letter
  exchange with the reason in its headers, then acked, so it never loops and never
  stops the consumer;
- anything else is taken as transient: republished to `<queue>.retry` with an
  exponential, jittered delay, and dead-lettered once the retries are used up;
- except an outage (the database or network unreachable): retried the same way for as
  long as it lasts, without spending the message's retry budget;
- and a message that comes before one it follows (WaitingFor): retried the same way,
  without spending the budget either, for up to MESSAGE_MAX_WAIT seconds from its
  first try, then dead-lettered. Its predecessor may itself be on a round of retries,
  so it is waited for by the clock, not by a count.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from typing import Any

from aio_pika.abc import AbstractIncomingMessage, AbstractQueue
from pydantic import BaseModel, ValidationError

from shared_domain import logs, tracing
from shared_domain.backoff import Backoff
from shared_domain.contracts import PAYLOADS, Envelope, MessageType, utcnow
from shared_domain.messaging.broker import Broker, OutgoingMessage
from shared_domain.messaging.topology import DEAD_LETTER_EXCHANGE, QueueSpec
from shared_domain.metrics import HANDLER_DURATION, MESSAGES_CONSUMED, OUTCOMES
from shared_domain.retry import is_outage

log = logging.getLogger(__name__)

Handler = Callable[[Envelope, Any], Awaitable[None]]
# How a handler is run: called directly, or through a batcher (several to a transaction).
Runner = Callable[[Handler, Envelope, Any], Awaitable[None]]

RETRY_COUNT_HEADER = "x-retry-count"

# What became of a message (the `outcome` label of messages_consumed_total).
HANDLED = "handled"
DUPLICATE = "duplicate"
RETRIED = "retried"
DEAD_LETTERED = "dead_lettered"
OUTAGE_COUNT_HEADER = "x-outage-retries"
WAIT_COUNT_HEADER = "x-wait-retries"
# Unix time in ms of the first try that had to wait (an integer: AMQP's float header
# is single precision, minutes off for today's time).
WAIT_SINCE_HEADER = "x-waiting-since-ms"

# What a too_large dead letter keeps of its body: enough to tell what it was.
KEPT_OF_TOO_LARGE = 65_536
# The body is JSON text; a sender that says otherwise sent something else.
JSON_CONTENT_TYPES = frozenset({"", "application/json"})
PLAIN_ENCODINGS = frozenset({"", "utf-8", "identity"})


class PermanentError(Exception):
    """The message can never be processed; retrying would not help."""


class WaitingFor(Exception):
    """The message follows another that was not handled yet: it waits for it."""


# Whether the message being handled is on its last try: a failure now dead-letters it.
_FINAL_TRY: ContextVar[bool] = ContextVar("final_try", default=True)


def final_try() -> bool:
    """Whether a failure of the message being handled is its last (True outside a
    consumer): a handler that may give up with an answer of its own (a refund that
    could not be done) gives it then, and before then fails to be retried with backoff."""
    return _FINAL_TRY.get()


class Consumer:
    def __init__(
        self,
        broker: Broker,
        spec: QueueSpec,
        handlers: Mapping[MessageType, Handler],
        *,
        max_retries: int,
        backoff: Backoff,
        service: str,
        max_wait: float,
        run: Runner | None = None,
        senders: Mapping[MessageType, str] | None = None,
        max_bytes: int | None = None,
    ) -> None:
        self._broker = broker
        self._run = run or _call
        self._spec = spec
        self._handlers = dict(handlers)
        self._max_retries = max_retries
        self._max_wait = max_wait
        self._backoff = backoff
        self._service = service
        self._senders = dict(senders or {})
        self._max_bytes = max_bytes
        self._tag: str | None = None
        self._queue: AbstractQueue | None = None
        # Each (type, outcome)'s counter and histogram, looked up once.
        self._series: dict[tuple[str, str], tuple[Any, Any]] = {}

    async def start(self) -> None:
        channel = self._broker.consume_channel
        queue = await channel.declare_queue(
            self._spec.name,
            durable=True,
            arguments={
                "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
                "x-dead-letter-routing-key": self._spec.name,
            },
        )
        self._queue = queue
        self._tag = await queue.consume(self.on_message, no_ack=False)
        log.info("consuming %s (%s)", self._spec.name, ", ".join(sorted(self._handlers)))

    async def stop(self) -> None:
        if self._queue is not None and self._tag is not None:
            await self._queue.cancel(self._tag)
            self._tag = None

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        started = time.perf_counter()
        unread = self._unreadable(message)
        if unread is not None:
            with logs.bind(message_id=message.message_id, message_type=message.type):
                await self._dead_letter(message, *unread)
            self._observe(_known_type(message.type), DEAD_LETTERED, started)
            return
        try:
            envelope = Envelope.model_validate_json(message.body)
            message_type = MessageType(envelope.type)
            handler = self._handlers.get(message_type)
            if handler is None:
                raise PermanentError(f"{self._spec.name} has no handler for {envelope.type!r}")
            payload: BaseModel = PAYLOADS[message_type].model_validate(envelope.payload)
        except (ValidationError, ValueError, PermanentError) as exc:
            with logs.bind(message_id=message.message_id, message_type=message.type):
                await self._dead_letter(message, "invalid_message", _describe(exc))
            self._observe(_known_type(message.type), DEAD_LETTERED, started)
            return
        sender = self._senders.get(message_type)
        if sender is not None and envelope.source != sender:
            with logs.bind_message(envelope):
                await self._dead_letter(
                    message,
                    "invalid_message",
                    f"{envelope.type} comes from {sender}, not {envelope.source!r}",
                    envelope,
                )
            self._observe(message_type, DEAD_LETTERED, started)
            return

        headers = message.headers or {}
        exchange = message.exchange or self._spec.exchange  # choreography: events too
        with (
            logs.bind_message(envelope),
            tracing.process_span(envelope, headers, exchange) as span,
        ):
            outcome = await self._handle(message, handler, envelope, payload)
            span.set_attribute("saga.outcome", outcome)
        if OUTCOMES.was_duplicate(envelope.message_id) and outcome == HANDLED:
            outcome = DUPLICATE
        self._observe(message_type, outcome, started)

    async def _handle(
        self, message: AbstractIncomingMessage, handler: Handler, envelope: Envelope, payload: Any
    ) -> str:
        """Run the handler and settle the message by its outcome; returns the outcome."""
        retries = _count(message.headers or {}, RETRY_COUNT_HEADER)
        _FINAL_TRY.set(retries >= self._max_retries)
        try:
            await self._run(handler, envelope, payload)
        except PermanentError as exc:
            tracing.failed(DEAD_LETTERED, str(exc))
            await self._dead_letter(message, "rejected", str(exc), envelope)
            return DEAD_LETTERED
        except Exception as exc:
            outcome = await self._retry_or_dead_letter(message, exc, envelope)
            tracing.failed(outcome, _describe(exc))
            return outcome
        await _settle(message.ack())
        return HANDLED

    def _unreadable(self, message: AbstractIncomingMessage) -> tuple[str, str] | None:
        """Why the message cannot be read at all, before its body is parsed: (reason,
        error) to dead-letter it with, or None."""
        size = len(message.body)
        if self._max_bytes is not None and size > self._max_bytes:
            return "too_large", (
                f"{size} bytes, more than MAX_MESSAGE_BYTES ({self._max_bytes}); "
                f"the dead letter keeps the first {KEPT_OF_TOO_LARGE}"
            )
        content_type = (message.content_type or "").split(";")[0].strip().lower()
        if content_type not in JSON_CONTENT_TYPES:
            return "invalid_message", f"content type {content_type!r} is not application/json"
        encoding = (message.content_encoding or "").strip().lower()
        if encoding not in PLAIN_ENCODINGS:
            return "invalid_message", f"content encoding {encoding!r} is not read here"
        return None

    def _observe(self, message_type: str, outcome: str, started: float) -> None:
        series = self._series.get((message_type, outcome))
        if series is None:
            series = self._series[message_type, outcome] = (
                MESSAGES_CONSUMED.labels(self._spec.name, message_type, outcome),
                HANDLER_DURATION.labels(message_type, outcome),
            )
        series[0].inc()
        series[1].observe(time.perf_counter() - started)

    async def _retry_or_dead_letter(
        self, message: AbstractIncomingMessage, exc: Exception, envelope: Envelope
    ) -> str:
        """Schedule the message again or dead-letter it; returns which (the outcome)."""
        headers = dict(message.headers or {})
        retries = _count(headers, RETRY_COUNT_HEADER)
        error = _describe(exc)
        if is_outage(exc):
            outages = _count(headers, OUTAGE_COUNT_HEADER)
            delay = self._backoff.delay(outages)
            log.warning(
                "%s for order %s: dependency unavailable (%s); retry in %.2fs (not counted)",
                envelope.type,
                envelope.order_id,
                error,
                delay,
            )
            headers[OUTAGE_COUNT_HEADER] = outages + 1
            await self._schedule(message, headers, delay)
            return RETRIED
        if isinstance(exc, WaitingFor):
            return await self._wait(message, headers, error, envelope)
        if retries >= self._max_retries:
            log.error(
                "%s for order %s failed %d times, dead-lettering: %s",
                envelope.type,
                envelope.order_id,
                retries + 1,
                error,
            )
            await self._dead_letter(message, "retries_exhausted", error, envelope)
            return DEAD_LETTERED
        delay = self._backoff.delay(retries)
        log.warning(
            "%s for order %s failed (%s); retry %d/%d in %.2fs",
            envelope.type,
            envelope.order_id,
            error,
            retries + 1,
            self._max_retries,
            delay,
        )
        headers[RETRY_COUNT_HEADER] = retries + 1
        headers["x-last-error"] = error[:500]
        await self._schedule(message, headers, delay)
        return RETRIED

    async def _wait(
        self,
        message: AbstractIncomingMessage,
        headers: dict[str, Any],
        error: str,
        envelope: Envelope,
    ) -> str:
        now = int(time.time() * 1000)
        since = headers.get(WAIT_SINCE_HEADER)
        since = since if isinstance(since, int) else now
        waited = (now - since) / 1000
        if waited >= self._max_wait:  # _dead_letter says so in the log
            reason = f"waited {waited:.0f}s (MESSAGE_MAX_WAIT) for an earlier message: {error}"
            await self._dead_letter(message, "retries_exhausted", reason, envelope)
            return DEAD_LETTERED
        waits = _count(headers, WAIT_COUNT_HEADER)
        delay = self._backoff.delay(waits)
        log.info(
            "%s for order %s waits for an earlier message (%s); again in %.2fs",
            envelope.type,
            envelope.order_id,
            error,
            delay,
        )
        headers[WAIT_COUNT_HEADER] = waits + 1
        headers[WAIT_SINCE_HEADER] = since
        await self._schedule(message, headers, delay)
        return RETRIED

    async def _schedule(
        self, message: AbstractIncomingMessage, headers: dict[str, Any], delay: float
    ) -> None:
        """Park the message in the retry queue for `delay` seconds, then ack it here."""
        try:
            await self._broker.publish(
                _copy(message, "", self._spec.retry, headers),
                expiration_ms=max(1, int(delay * 1000)),
            )
        except Exception as publish_exc:
            log.error("could not schedule retry, requeueing: %s", publish_exc)
            await _settle(message.nack(requeue=True))
            return
        await _settle(message.ack())

    async def _dead_letter(
        self,
        message: AbstractIncomingMessage,
        reason: str,
        error: str,
        envelope: Envelope | None = None,
    ) -> None:
        what = f"{envelope.type} for order {envelope.order_id}" if envelope else "message"
        log.error("dead-lettering %s from %s (%s): %s", what, self._spec.name, reason, error)
        headers = dict(message.headers or {})
        headers.update(
            {
                "x-dead-letter-reason": reason,
                "x-error": error[:1000],
                "x-original-exchange": message.exchange or "",
                "x-original-routing-key": message.routing_key or "",
                "x-dead-lettered-by": self._service,
                "x-dead-lettered-at": utcnow().isoformat(),
            }
        )
        body = message.body
        if message.content_type:  # the copy is published as JSON, whatever it said
            headers["x-original-content-type"] = message.content_type
        if message.content_encoding:
            headers["x-original-content-encoding"] = message.content_encoding
        if reason == "too_large":
            headers["x-original-size"] = len(body)
            body = body[:KEPT_OF_TOO_LARGE]
        try:
            await self._broker.publish(
                _copy(message, DEAD_LETTER_EXCHANGE, self._spec.name, headers, body)
            )
        except Exception as exc:
            # The queue's own dead-letter exchange still catches it, without our reason.
            log.error("could not publish dead letter, rejecting instead: %s", exc)
            await _settle(message.reject(requeue=False))
            return
        await _settle(message.ack())


async def _call(handler: Handler, envelope: Envelope, payload: Any) -> None:
    await handler(envelope, payload)


def _copy(
    message: AbstractIncomingMessage,
    exchange: str,
    routing_key: str,
    headers: dict[str, Any],
    body: bytes | None = None,
) -> OutgoingMessage:
    return OutgoingMessage(
        message_id=message.message_id or "",
        exchange=exchange,
        routing_key=routing_key,
        body=message.body if body is None else body,
        message_type=message.type or "",
        correlation_id=message.correlation_id,
        headers=headers,
    )


def _known_type(value: str | None) -> str:
    """A label for a message that could not be read: its type if it names one, so that a
    sender's bad messages cannot mint new series."""
    try:
        return MessageType(value or "").value
    except ValueError:
        return "unknown"


def _count(headers: Mapping[str, Any], key: str) -> int:
    raw = headers.get(key)
    return raw if isinstance(raw, int) else 0


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ValidationError):
        parts = [
            f"{'.'.join(str(p) for p in e['loc']) or '<body>'}: {e['msg']}" for e in exc.errors()
        ]
        return f"validation failed: {'; '.join(parts)}"[:1000]
    return f"{type(exc).__name__}: {exc}"[:1000]


async def _settle(action: Awaitable[None]) -> None:
    """Ack/nack on a channel that died in the meantime: the broker redelivers the message
    and idempotency makes that harmless, so log and move on."""
    try:
        await action
    except Exception as exc:
        log.warning("could not settle message (it will be redelivered): %s", exc)
