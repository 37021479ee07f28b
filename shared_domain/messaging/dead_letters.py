"""Dead-letter tooling: list the dead-letter queues, inspect their messages, replay a
message into the queue it came from, or discard it.

Every operation works on a channel of its own and fetches with basic.get without
acknowledging; closing the channel puts back, in their places, the messages it did not
act on. A replay publishes (with a confirm) before it acks the dead letter, so a crash
in between leaves a copy in both queues, never in neither: the consumers' idempotency
absorbs the copy.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pydantic_core
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue

from shared_domain.contracts import utcnow
from shared_domain.messaging.broker import Broker, OutgoingMessage
from shared_domain.messaging.consumer import OUTAGE_COUNT_HEADER, RETRY_COUNT_HEADER
from shared_domain.messaging.topology import ALL_QUEUES, QueueSpec

BY_DLQ: dict[str, QueueSpec] = {spec.dlq: spec for spec in ALL_QUEUES}
SCAN_LIMIT = 10_000  # most messages looked through to find one by key

# Headers describing the failure: dropped on replay so the message starts afresh.
_FAILURE_HEADERS = (
    RETRY_COUNT_HEADER,
    OUTAGE_COUNT_HEADER,
    "x-last-error",
    "x-dead-letter-reason",
    "x-error",
    "x-dead-lettered-by",
    "x-dead-lettered-at",
    "x-death",
    "x-first-death-exchange",
    "x-first-death-queue",
    "x-first-death-reason",
    "x-last-death-exchange",
    "x-last-death-queue",
    "x-last-death-reason",
)


class UnknownQueue(LookupError):
    def __init__(self, name: str) -> None:
        known = ", ".join(BY_DLQ)
        super().__init__(f"{name!r} is not a dead-letter queue; known: {known}")


@dataclass(frozen=True)
class DeadLetter:
    """A dead-lettered message as an operator sees it."""

    key: str  # the message id, or a digest of the body when it has none
    queue: str
    source_queue: str
    message_id: str | None
    type: str | None
    reason: str
    error: str | None
    dead_lettered_by: str | None
    dead_lettered_at: str | None
    retries: int
    original_exchange: str | None
    original_routing_key: str | None
    order_id: str | None
    saga_id: str | None
    body: Any  # the parsed JSON, or the text when it is not JSON
    headers: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def spec_for(dlq: str) -> QueueSpec:
    spec = BY_DLQ.get(dlq)
    if spec is None:
        raise UnknownQueue(dlq)
    return spec


def message_key(message: AbstractIncomingMessage) -> str:
    if message.message_id:
        return message.message_id
    return "sha1-" + hashlib.sha1(message.body).hexdigest()[:20]


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def view(message: AbstractIncomingMessage, dlq: str) -> DeadLetter:
    headers = _plain(dict(message.headers or {}))
    try:
        # pydantic's parser stops at a nesting depth the response can still be encoded
        # at, where json.loads would go on until Python's recursion limit; and it
        # refuses NaN, which no JSON response can carry.
        body: Any = pydantic_core.from_json(message.body, allow_inf_nan=False)
    except ValueError:
        body = message.body.decode("utf-8", errors="replace")
    envelope = body if isinstance(body, dict) else {}
    reason = headers.get("x-dead-letter-reason")
    if reason is None:  # dead-lettered by the broker itself (rejected, expired)
        deaths = headers.get("x-death") or [{}]
        reason = f"broker: {deaths[0].get('reason', 'unknown')}"
    retries = headers.get(RETRY_COUNT_HEADER)
    return DeadLetter(
        key=message_key(message),
        queue=dlq,
        source_queue=spec_for(dlq).name,
        message_id=message.message_id,
        type=message.type or envelope.get("type"),
        reason=str(reason),
        error=headers.get("x-error"),
        dead_lettered_by=headers.get("x-dead-lettered-by"),
        dead_lettered_at=headers.get("x-dead-lettered-at"),
        retries=retries if isinstance(retries, int) else 0,
        original_exchange=headers.get("x-original-exchange") or message.exchange,
        original_routing_key=headers.get("x-original-routing-key") or message.routing_key,
        order_id=str(envelope["order_id"]) if envelope.get("order_id") else None,
        saga_id=str(envelope["saga_id"]) if envelope.get("saga_id") else None,
        body=body,
        headers=headers,
    )


class DeadLetters:
    def __init__(self, broker: Broker) -> None:
        self._broker = broker

    async def counts(self) -> list[dict[str, Any]]:
        """Every dead-letter queue with the number of messages in it."""
        result = []
        async with self._channel() as channel:
            for spec in ALL_QUEUES:
                queue = await channel.declare_queue(spec.dlq, passive=True)
                count = queue.declaration_result.message_count
                result.append({"queue": spec.dlq, "source_queue": spec.name, "messages": count})
        return result

    async def peek(self, dlq: str, limit: int) -> tuple[list[DeadLetter], int]:
        """Up to `limit` messages from the head of the queue, left in place; and the
        number of messages in the queue."""
        spec_for(dlq)
        async with self._channel() as channel:
            queue = await channel.declare_queue(dlq, passive=True)
            total = queue.declaration_result.message_count or 0
            letters = [view(m, dlq) async for m in _fetch(queue, min(limit, total))]
        return letters, total

    async def find(self, dlq: str, key: str) -> DeadLetter | None:
        spec_for(dlq)
        for attempt in range(LOOKS):
            async with self._channel() as channel:
                queue = await channel.declare_queue(dlq, passive=True)
                async for message in _fetch(queue, SCAN_LIMIT):
                    if message_key(message) == key:
                        return view(message, dlq)
            await _look_again(attempt)
        return None

    async def replay(self, dlq: str, key: str) -> DeadLetter | None:
        """Put the message back on the queue it was dead-lettered from."""
        return await self._take(dlq, key, replay=True)

    async def discard(self, dlq: str, key: str) -> DeadLetter | None:
        """Drop the message for good."""
        return await self._take(dlq, key, replay=False)

    async def replay_all(self, dlq: str, limit: int) -> list[DeadLetter]:
        """Replay up to `limit` messages, oldest first. Only the messages in the queue
        when the call starts are replayed, even if some come straight back."""
        spec = spec_for(dlq)
        replayed: list[DeadLetter] = []
        async with self._channel() as channel:
            queue = await channel.declare_queue(dlq, passive=True)
            count = min(limit, queue.declaration_result.message_count or 0)
            async for message in _fetch(queue, count):
                await self._republish(message, spec)
                await message.ack()
                replayed.append(view(message, dlq))
        return replayed

    async def _take(self, dlq: str, key: str, *, replay: bool) -> DeadLetter | None:
        spec = spec_for(dlq)
        for attempt in range(LOOKS):
            async with self._channel() as channel:
                queue = await channel.declare_queue(dlq, passive=True)
                async for message in _fetch(queue, SCAN_LIMIT):
                    if message_key(message) != key:
                        continue
                    if replay:
                        await self._republish(message, spec)
                    await message.ack()
                    return view(message, dlq)
            await _look_again(attempt)
        return None

    async def _republish(self, message: AbstractIncomingMessage, spec: QueueSpec) -> None:
        headers = {k: v for k, v in (message.headers or {}).items() if k not in _FAILURE_HEADERS}
        previous = headers.get("x-replay-count")
        headers["x-replay-count"] = (previous if isinstance(previous, int) else 0) + 1
        headers["x-replayed-at"] = utcnow().isoformat()
        await self._broker.publish(
            OutgoingMessage(
                message_id=message.message_id or "",
                exchange="",  # straight to the queue it came from, not to every subscriber
                routing_key=spec.name,
                body=message.body,
                message_type=message.type or "",
                correlation_id=message.correlation_id,
                headers=headers,
            )
        )

    @contextlib.asynccontextmanager
    async def _channel(self) -> AsyncIterator[AbstractChannel]:
        channel = await self._broker.open_channel()
        try:
            yield channel
        finally:
            with contextlib.suppress(Exception):
                await channel.close()


# A message another client is peeking at is out of the queue until that client's channel
# closes (milliseconds): a key not found is looked for again before it is called gone.
LOOKS = 3
LOOK_AGAIN_AFTER = 0.2  # seconds


async def _look_again(attempt: int) -> None:
    if attempt < LOOKS - 1:
        await asyncio.sleep(LOOK_AGAIN_AFTER)


async def _fetch(queue: AbstractQueue, limit: int) -> AsyncIterator[AbstractIncomingMessage]:
    for _ in range(limit):
        message = await queue.get(no_ack=False, fail=False)
        if message is None:
            return
        yield message
