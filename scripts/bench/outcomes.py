"""Learning when sagas end without adding load: one queue of the benchmark's own, bound
to the order outcome events published anyway (the orchestrator's in orchestration; in
choreography the confirmation's outcome, the order service's cancellation and the
undos that could not be done)."""

from __future__ import annotations

import asyncio
import json
import time

import aio_pika
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection

from shared_domain.contracts import EVENTS_EXCHANGE, MessageType

OUTCOMES = {
    MessageType.ORDER_COMPLETED.value: "completed",
    MessageType.ORDER_CANCELLED.value: "cancelled",
    MessageType.ORDER_FAILED.value: "failed",
}
CHOREOGRAPHY_OUTCOMES = {
    MessageType.NOTIFICATION_SENT.value: "completed",  # of the order confirmation
    MessageType.NOTIFICATION_FAILED.value: "completed",
    MessageType.ORDER_CANCELLED.value: "cancelled",
    MessageType.PAYMENT_REFUND_FAILED.value: "failed",
    MessageType.INVENTORY_RELEASE_FAILED.value: "failed",
    MessageType.SHIPPING_CANCEL_FAILED.value: "failed",
}


class Outcomes:
    """order id -> (status, monotonic time its outcome event arrived); first one wins."""

    def __init__(self, saga_mode: str = "orchestration") -> None:
        self._outcomes = CHOREOGRAPHY_OUTCOMES if saga_mode == "choreography" else OUTCOMES
        self.received = 0  # messages this queue was delivered (not the system's own)
        self.seen: dict[str, tuple[str, float]] = {}
        self._waiters: dict[str, asyncio.Future[None]] = {}
        self._connection: AbstractRobustConnection | None = None

    async def subscribe(self, amqp_url: str) -> None:
        self._connection = await aio_pika.connect_robust(
            amqp_url, client_properties={"connection_name": "benchmark outcomes"}
        )
        channel = await self._connection.channel()
        await channel.set_qos(prefetch_count=1000)
        exchange = await channel.declare_exchange(
            EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        for key in self._outcomes:
            await queue.bind(exchange, routing_key=key)
        await queue.consume(self._on_message, no_ack=True)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        arrived = time.monotonic()
        self.received += 1
        status = self._outcomes.get(message.routing_key or "")
        if status is None:
            return
        body = json.loads(message.body)
        if body["type"].startswith("notification.") and body["payload"].get("kind") != (
            "order_confirmation"
        ):
            return  # the cancellation notice: the order's outcome came before it
        order_id = body["order_id"]
        if order_id in self.seen:
            return
        self.seen[order_id] = (status, arrived)
        waiter = self._waiters.pop(order_id, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def finished(self, order_id: str, within: float) -> bool:
        """Whether the order's outcome arrives within `within` seconds."""
        if order_id in self.seen:
            return True
        waiter = self._waiters.setdefault(order_id, asyncio.get_running_loop().create_future())
        try:
            await asyncio.wait_for(asyncio.shield(waiter), within)
        except TimeoutError:
            return False
        return True

    async def all_finished(self, order_ids: list[str], within: float) -> list[str]:
        """Waits for every order's outcome, `within` seconds at most; returns the ones
        still missing."""
        results = await asyncio.gather(*(self.finished(o, within) for o in order_ids))
        return [o for o, done in zip(order_ids, results, strict=True) if not done]

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()
